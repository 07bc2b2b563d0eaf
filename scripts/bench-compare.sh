#!/usr/bin/env bash
# Compares this checkout with an earlier revision on the write path, to show a refactor
# changed nothing it should not have (loopback only, stops by itself):
#   1. instructions per POST /api/events in afw's own process (callgrind: the difference of
#      a 1 000- and a 4 000-request run, so start-up cancels out; repeatable to ~0.1 %);
#   2. POST /api/events throughput, 64 connections, the two builds in alternating rounds
#      (the load generator shares the cores, so only the median ratio means anything);
#      in memory mode, and with REDIS=1 also against a local redis-server.
#
#   scripts/bench-compare.sh REV              # e.g. the commit before a refactor
#   ROUNDS=5 DURATION=10s REDIS=1 scripts/bench-compare.sh REV
#
# REV is built in a git worktree under target/compare/ (its own target dir, kept between
# runs). Rate limits are off in both builds (one load generator is one client).
set -euo pipefail
cd "$(dirname "$0")/.."

REV="${1:?usage: scripts/bench-compare.sh REV}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
EVENT=tests/fixtures/bench-event.json
NEW_PORT=3110; OLD_PORT=3111; REDIS_PORT=6398
OUT="$(mktemp -d)"; PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

command -v oha >/dev/null 2>&1 || { echo "==> installing oha"; cargo install oha --locked --quiet; }
export PATH="$HOME/.cargo/bin:$PATH"

sha=$(git rev-parse --short "$REV")
tree="target/compare/$sha"
echo "==> building this checkout and $sha (release)"
cargo build --release --quiet --bin afw
if [ ! -d "$tree" ]; then git worktree add --detach -f "$tree" "$sha" >/dev/null; fi
(cd "$tree" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --quiet --bin afw)
NEW=target/release/afw; OLD="target/compare/target/release/afw"

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
wait_healthy() { for _ in $(seq 1 100); do curl -s "127.0.0.1:$1/health" | grep -q '"status":"ok"' && return 0; sleep 0.1; done; echo "afw on $1 not healthy" >&2; exit 1; }

if command -v valgrind >/dev/null 2>&1; then
  per_request() { # binary
    local counts=()
    for n in 1000 4000; do
      rm -f "$OUT"/cg.*
      RUST_LOG=warn PORT=$NEW_PORT AFW_RATE_LIMIT_OFF=1 valgrind --tool=callgrind \
        --callgrind-out-file="$OUT/cg.%p" "$1" >/dev/null 2>"$OUT/valgrind.log" & local pid=$!
      for _ in $(seq 1 100); do curl -s "127.0.0.1:$NEW_PORT/health" >/dev/null && break; sleep 0.2; done
      oha --no-tui -n $n -c 4 -m POST -H 'content-type: application/json' -D "$EVENT" \
        "http://127.0.0.1:$NEW_PORT/api/events" >/dev/null 2>&1
      kill -INT "$pid"; wait "$pid" 2>/dev/null || true
      counts+=("$(grep -h '^summary' "$OUT"/cg.* | awk '{print $2}')")
    done
    echo $(( (counts[1] - counts[0]) / 3000 ))
  }
  echo; echo "==> 1. instructions per POST /api/events (callgrind, memory mode)"
  old=$(per_request "$OLD"); new=$(per_request "$NEW")
  python3 -c "print(f'$sha: $old, this checkout: $new, {($new - $old) / $old * 100:+.2f}%')"
else
  echo "(valgrind not installed: skipping the instruction counts)"
fi

compare() { # label [REDIS_URL]
  local label=$1 url=${2:-}
  REDIS_URL="$url" RUST_LOG=warn PORT=$NEW_PORT AFW_RATE_LIMIT_OFF=1 AFW_INSTANCE_ID=new "$NEW" >/dev/null 2>&1 &
  local np=$!; PIDS+=("$np")
  REDIS_URL="$url" RUST_LOG=warn PORT=$OLD_PORT AFW_RATE_LIMIT_OFF=1 AFW_INSTANCE_ID=old "$OLD" >/dev/null 2>&1 &
  local op=$!; PIDS+=("$op")
  wait_port $NEW_PORT; wait_port $OLD_PORT; wait_healthy $NEW_PORT; wait_healthy $OLD_PORT
  for r in $(seq 1 "$ROUNDS"); do
    for which in old new; do
      local port=$OLD_PORT; [ $which = new ] && port=$NEW_PORT
      oha --no-tui --output-format json -z "$DURATION" -c "$CONNS" -m POST \
        -H 'content-type: application/json' -D "$EVENT" \
        "http://127.0.0.1:$port/api/events" >"$OUT/$which-$r.json"
    done
  done
  kill "$np" "$op" 2>/dev/null || true; wait "$np" "$op" 2>/dev/null || true
  python3 - "$OUT" "$ROUNDS" "$label" "$sha" <<'PY'
import json, os, statistics, sys
out, rounds, label, sha = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def rps(name):
    d = json.load(open(os.path.join(out, name)))
    codes = d.get("statusCodeDistribution", {})
    assert all(k.startswith("2") for k in codes), f"{name}: non-2xx answers {codes}"
    return d["summary"]["requestsPerSec"]
old = [rps(f"old-{r}.json") for r in range(1, rounds + 1)]
new = [rps(f"new-{r}.json") for r in range(1, rounds + 1)]
ratios = [n / o for n, o in zip(new, old)]
print(f"{label}: {sha} {statistics.median(old):.0f} req/s, this checkout "
      f"{statistics.median(new):.0f} req/s; median ratio {statistics.median(ratios) * 100:.1f}% "
      f"(rounds {', '.join(f'{x * 100:.1f}%' for x in ratios)})")
PY
}

echo; echo "==> 2. POST /api/events, $CONNS connections, $DURATION per run, $ROUNDS alternating rounds"
compare "memory"
if [ "${REDIS:-0}" = 1 ]; then
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$OUT/redis.log" >/dev/null
  wait_port $REDIS_PORT
  compare "redis" "redis://127.0.0.1:$REDIS_PORT"
fi
