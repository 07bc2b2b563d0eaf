#!/usr/bin/env bash
# Listings that scale: one page of GET /api/sessions (first, 10 pages deep, by status, by
# user) and of GET /api/users, timed at 1 000, 10 000 and 100 000 stored sessions, in
# memory mode and against a local redis-server (started here, no persistence, port 6398).
# The cost of a page must stay flat as the total grows. Loopback only; stops by itself.
#
#   scripts/bench-listing.sh                  # both modes, ~2 minutes
#   STEPS=1000,10000 MODES=redis scripts/bench-listing.sh
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="${STEPS:-1000,10000,100000}"
MODES="${MODES:-memory redis}"
REPEAT="${REPEAT:-30}"
PORT=3103
REDIS_PORT=6398
OUT="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
echo "==> building (release)"
cargo build --release --quiet --bin afw --bin afw-bench

wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
wait_healthy() { for _ in $(seq 1 100); do curl -s "127.0.0.1:$PORT/health" | grep -q '"status":"ok"' && return 0; sleep 0.1; done; echo "afw not healthy" >&2; exit 1; }

for mode in $MODES; do
  url=""
  if [ "$mode" = redis ]; then
    redis-server --port "$REDIS_PORT" --save "" --appendonly no --daemonize no \
      >"$OUT/redis.log" 2>&1 &
    PIDS+=("$!"); wait_port "$REDIS_PORT"
    url="redis://127.0.0.1:$REDIS_PORT"
  fi
  # Room for 100 000 sessions in memory mode (its default cap is 10 000).
  REDIS_URL="$url" RUST_LOG=warn PORT=$PORT AFW_RATE_LIMIT_OFF=1 AFW_MAX_SESSIONS=200000 \
    target/release/afw >"$OUT/afw.log" 2>&1 &
  AFW_PID=$!; PIDS+=("$AFW_PID"); wait_port $PORT; wait_healthy
  echo
  echo "==> $mode mode"
  target/release/afw-bench --addr "127.0.0.1:$PORT" listing --steps "$STEPS" --repeat "$REPEAT"
  kill "$AFW_PID"; wait "$AFW_PID" 2>/dev/null || true
  if [ "$mode" = redis ]; then redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
done
