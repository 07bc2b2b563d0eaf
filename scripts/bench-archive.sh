#!/usr/bin/env bash
# Archival benchmark (release build, loopback only; stops by itself, about 3 minutes).
#
#   scripts/bench-archive.sh
#   SESSIONS=2000 DURATION=5s scripts/bench-archive.sh
#
# One afw (memory storage) archiving into a real PostgreSQL (Debian's binaries, a fresh
# cluster in a temporary directory, default durability: fsync and synchronous_commit on):
#   1. preload SESSIONS (10 000) sessions of EVENTS - 1 (199) events each, not ended;
#   2. the POST benchmark (oha, POST /api/events with the fixture event, CONNS connections,
#      DURATION) with the archiver idle;
#   3. one `session:ended` to each session (so EVENTS events each), and the same POST
#      benchmark at once, while the archiver files them: the time until the archive holds
#      every one (afw_archive_snapshots_total{outcome="created"}), so the archival rate;
#   4. the POST benchmark again, the archiver idle again (drift of the machine);
#   then what PostgreSQL holds (rows, bytes).
# The load generator shares the machine's cores with afw and PostgreSQL: compare the
# figures of one run with each other, not with other machines.
set -euo pipefail
cd "$(dirname "$0")/.."

SESSIONS="${SESSIONS:-10000}"
EVENTS="${EVENTS:-200}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
AFW_PORT=3110
PG_PORT=5499
EVENT=tests/fixtures/bench-event.json
OUT="$(mktemp -d)"
PIDS=()
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "==> installing postgresql (Debian package)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
# PostgreSQL refuses to run as root: then as the postgres user.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$OUT/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

# oha, the descriptor limit, the release build, wait_port.
source scripts/bench-setup.sh

echo "==> PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
mkdir -p "$OUT/pg"
[ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$OUT"
as_pg "$PG_BIN/initdb" -A trust -U afw -D "$OUT/pg/data" >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$OUT/pg/data" -l "$OUT/pg/log" -w \
  -o "-p $PG_PORT -k $OUT/pg -c listen_addresses=127.0.0.1" start >/dev/null
PG_URL="postgres://afw@127.0.0.1:$PG_PORT/postgres"

AFW_ARCHIVE="$PG_URL" AFW_MAX_SESSIONS=$((SESSIONS + 1000)) \
  AFW_MEMORY_BUDGET_BYTES=$((8 * 1024 * 1024 * 1024)) AFW_RATE_LIMIT_OFF=1 RUST_LOG=warn \
  PORT=$AFW_PORT target/release/afw >"$OUT/afw.log" 2>&1 &
AFW_PID=$!; PIDS+=("$AFW_PID"); wait_port $AFW_PORT
BENCH=(target/release/afw-bench --addr "127.0.0.1:$AFW_PORT")

post_bench() { # NAME
  oha -z "$DURATION" -c "$CONNS" --no-tui --output-format json -m POST \
    -H 'content-type: application/json' -D "$EVENT" \
    "http://127.0.0.1:$AFW_PORT/api/events" >"$OUT/$1.json"
}
rate() { # NAME: throughput, p99 and non-2xx answers of one oha run
  python3 - "$OUT/$1.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
bad = sum(v for k, v in s.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
rps, p99 = s["summary"]["requestsPerSec"], s["latencyPercentiles"]["p99"] * 1000
print(f"{rps:.0f} req/s, p99 {p99:.2f} ms, {bad} non-2xx")
PY
}

echo "==> 1. preload"
"${BENCH[@]}" archive-preload --sessions "$SESSIONS" --events "$EVENTS"
echo "==> 2. POST benchmark, archiver idle ($DURATION, $CONNS connections)"
post_bench idle; echo "idle:   $(rate idle)"
echo "==> 3. end every session; the POST benchmark while they are archived"
"${BENCH[@]}" archive-end --sessions "$SESSIONS" >"$OUT/archive.txt" 2>&1 &
END_PID=$!; PIDS+=("$END_PID")
post_bench during
if ! wait "$END_PID"; then cat "$OUT/archive.txt"; echo "archival did not finish" >&2; exit 1; fi
cat "$OUT/archive.txt"
echo "during: $(rate during)"
echo "==> 4. POST benchmark, archiver idle again"
post_bench after; echo "after:  $(rate after)"

echo "==> what PostgreSQL holds"
as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U afw -d postgres -At -F ' ' -c \
  "SELECT count(*) AS rows, pg_size_pretty(sum(pg_column_size(body))) AS bodies,
          pg_size_pretty(pg_total_relation_size('afw_snapshots')) AS table_size
     FROM afw_snapshots" | awk '{print "rows " $1 ", bodies " $2 " " $3 " (stored), table " $4 " " $5}'
curl -s "127.0.0.1:$AFW_PORT/metrics" | grep -E '^afw_archive_(snapshots_total\{|failures_total|pending)' || true
