#!/usr/bin/env bash
# afw benchmarks (memory storage, release build, loopback only; stops by itself).
#
#   scripts/bench.sh            # everything, ~2.5 minutes
#   DURATION=5s scripts/bench.sh
#   SECTIONS="1 3" scripts/bench.sh   # only some of the sections below
#
# Prints throughput and latency percentiles for:
#   1. POST /api/events with the fixture event, 64 connections, afw vs a minimal axum
#      server that only parses the same JSON (src/bin/afw-baseline.rs), alternating
#      over ROUNDS rounds (default 3), median ratio;
#   2. GET /api/events/:id with 10 000 stored events, 1 connection;
#   3. one event to 10 000 WebSocket subscribers (src/bin/afw-bench.rs), with server RSS;
#   4. server RSS after 200 000 posted events.
# The load generator (oha, installed from crates.io when missing) shares the machine's
# cores with the server: compare with the baseline, not with other machines.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
SECTIONS="${SECTIONS:-1 2 3 4}"
ROUNDS="${ROUNDS:-3}"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
AFW_PORT=3100
BASE_PORT=3101
EVENT=tests/fixtures/bench-event.json
OUT="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT

if ! command -v oha >/dev/null 2>&1; then
  echo "==> installing oha (HTTP load generator) from crates.io"
  cargo install oha --locked --quiet
  export PATH="$HOME/.cargo/bin:$PATH"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "==> building (release)"
cargo build --release --quiet --bins

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

start_afw() {
  RUST_LOG=warn PORT=$AFW_PORT AFW_WS_MAX_CLIENTS=20000 target/release/afw >"$OUT/afw.log" 2>&1 &
  AFW_PID=$!; PIDS+=("$AFW_PID"); wait_port $AFW_PORT
}
stop_afw() { kill "$AFW_PID" 2>/dev/null || true; wait "$AFW_PID" 2>/dev/null || true; }

# oha JSON -> "req/s p50 p99" (latencies in ms), and the count of non-2xx answers.
summarize() {
  python3 - "$1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]; p = d["latencyPercentiles"]
codes = d.get("statusCodeDistribution", {})
bad = sum(v for k, v in codes.items() if not k.startswith("2"))
print(f'{s["requestsPerSec"]:.0f} req/s, p50 {p["p50"]*1000:.2f} ms, p99 {p["p99"]*1000:.2f} ms, '
      f'success {s["successRate"]*100:.1f}%, non-2xx {bad}')
print(f'RPS={s["requestsPerSec"]:.0f}', file=open(sys.argv[1] + ".rps", "w"))
PY
}

post_load() { # name port
  oha --no-tui --output-format json -z "$DURATION" -c "$CONNS" -m POST \
    -H 'content-type: application/json' -D "$EVENT" "http://127.0.0.1:$2/api/events" >"$OUT/$1.json"
  printf '%-34s %s\n' "$1" "$(summarize "$OUT/$1.json")"
}

if want 1; then
echo
echo "==> 1. POST /api/events, fixture event, $CONNS connections, $DURATION per run, $ROUNDS alternating rounds"
PORT=$BASE_PORT target/release/afw-baseline >/dev/null 2>&1 & BASE_PID=$!; PIDS+=("$BASE_PID")
wait_port $BASE_PORT
start_afw
# Alternating runs: both servers see the same machine conditions; the median ratio is the
# figure (single runs vary by +-10% here because the load generator shares the cores).
for r in $(seq 1 "$ROUNDS"); do
  post_load "round $r baseline (parse only)" $BASE_PORT
  cp "$OUT/round $r baseline (parse only).json" "$OUT/base-$r.json"
  post_load "round $r afw memory" $AFW_PORT
  cp "$OUT/round $r afw memory.json" "$OUT/afw-$r.json"
done
kill "$BASE_PID" 2>/dev/null || true
python3 - "$OUT" "$ROUNDS" <<'PY'
import sys, json, os, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(name): return json.load(open(os.path.join(out, name)))
ratios, afw_rps, afw_p99, base_rps = [], [], [], []
for r in range(1, rounds + 1):
    b, a = load(f"base-{r}.json"), load(f"afw-{r}.json")
    base_rps.append(b["summary"]["requestsPerSec"]); afw_rps.append(a["summary"]["requestsPerSec"])
    afw_p99.append(a["latencyPercentiles"]["p99"] * 1000)
    ratios.append(afw_rps[-1] / base_rps[-1])
med = statistics.median(ratios)
print(f"median: afw {statistics.median(afw_rps):.0f} req/s (p99 {statistics.median(afw_p99):.2f} ms), "
      f"baseline {statistics.median(base_rps):.0f} req/s")
print(f"afw / baseline throughput, median of {rounds}: {med * 100:.1f}% "
      f"(rounds: {', '.join(f'{x * 100:.1f}%' for x in ratios)})")
PY
stop_afw
fi

if want 2; then
echo
echo "==> 2. GET /api/events/:id with 10 000 stored events, 1 connection, $DURATION"
start_afw
target/release/afw-bench --addr 127.0.0.1:$AFW_PORT preload --session read-bench --events 10000 --event-file "$EVENT"
for q in "" "?limit=10000"; do
  oha --no-tui --output-format json -z "$DURATION" -c 1 "http://127.0.0.1:$AFW_PORT/api/events/read-bench$q" >"$OUT/read.json"
  printf '%-34s %s\n' "GET events${q:- (default limit 1000)}" "$(summarize "$OUT/read.json")"
done
stop_afw
fi

if want 3; then
echo
echo "==> 3. one event to 10 000 WebSocket subscribers"
start_afw
target/release/afw-bench --addr 127.0.0.1:$AFW_PORT fanout --clients 10000 --events 20 --interval-ms 250 --server-pid "$AFW_PID"
stop_afw
fi

if want 4; then
echo
echo "==> 4. server RSS after 200 000 posted events"
start_afw
echo "RSS at start: $(target/release/afw-bench rss --pid "$AFW_PID") MiB"
oha --no-tui --output-format json -n 200000 -c "$CONNS" -m POST -H 'content-type: application/json' \
  -D "$EVENT" "http://127.0.0.1:$AFW_PORT/api/events" >"$OUT/rss.json"
printf '%-34s %s\n' "200k POSTs" "$(summarize "$OUT/rss.json")"
echo "RSS after 200 000 events: $(target/release/afw-bench rss --pid "$AFW_PID") MiB"
stop_afw
fi
