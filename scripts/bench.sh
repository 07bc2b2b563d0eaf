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
#   4. server RSS after 200 000 posted events;
#   Redis mode (a local redis-server started here, no persistence):
#   5. POST /api/events, 64 connections, Redis vs memory mode (alternating rounds);
#   6. POST on instance A -> WebSocket delivery on instance B, 1 000 events, idle and under
#      a 16-connection load on A;
#   7. GET /api/events/:id with 10 000 stored events, 1 connection;
#   8. a Redis outage under writes: time to the first 503, restart to the first 2xx, and
#      acknowledged events lost to a subscriber;
#   9. redis-benchmark on the same Redis, for Redis's own limit;
#   10. POST /api/events with an API key and rate limits on (limits high enough that none
#      is hit, so every request pays for the checks) vs the same build with both off,
#      alternating over ROUNDS rounds, median overhead.
#   11. POST /api/events with request logs (RUST_LOG=info, one line per request to a log
#      file) and HTTP metrics on vs the same build with AFW_OBSERVE_OFF=1, alternating over
#      ROUNDS rounds, median overhead; then instructions per request under callgrind (the
#      repeatable figure), with and without the log line.
#   12. SIGTERM under a 64-connection write load: how long the drain takes, the exit code,
#      and what the load generator saw (answers by status, errors by kind).
# Sections 1-9 run afw with rate limits off (AFW_RATE_LIMIT_OFF=1): one load generator is
# one client, and its 70 000 req/s are far past the per-client defaults.
# The load generator (oha, installed from crates.io when missing) shares the machine's
# cores with the server: compare with the baseline, not with other machines.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
SECTIONS="${SECTIONS:-1 2 3 4 5 6 7 8 9 10 11 12}"
REDIS_PORT=6399
AFW_B_PORT=3102
ROUNDS="${ROUNDS:-3}"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }
AFW_PORT=3100
BASE_PORT=3101
EVENT=tests/fixtures/bench-event.json
OUT="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  redis-cli -p 6399 shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$OUT"
}
trap cleanup EXIT

# oha, the descriptor limit, the release build, wait_port.
source scripts/bench-setup.sh

start_afw() { # [REDIS_URL]
  REDIS_URL="${1:-}" RUST_LOG=warn PORT=$AFW_PORT AFW_WS_MAX_CLIENTS=20000 AFW_RATE_LIMIT_OFF=1 \
    target/release/afw >"$OUT/afw.log" 2>&1 &
  AFW_PID=$!; PIDS+=("$AFW_PID"); wait_port $AFW_PORT
  [ -z "${1:-}" ] || wait_healthy $AFW_PORT
}
stop_afw() { kill "$AFW_PID" 2>/dev/null || true; wait "$AFW_PID" 2>/dev/null || true; }
start_afw_b() { # REDIS_URL
  REDIS_URL="$1" RUST_LOG=warn PORT=$AFW_B_PORT AFW_RATE_LIMIT_OFF=1 target/release/afw >"$OUT/afw-b.log" 2>&1 &
  AFW_B_PID=$!; PIDS+=("$AFW_B_PID"); wait_port $AFW_B_PORT; wait_healthy $AFW_B_PORT
}
stop_afw_b() { kill "$AFW_B_PID" 2>/dev/null || true; wait "$AFW_B_PID" 2>/dev/null || true; }
wait_healthy() { for _ in $(seq 1 100); do curl -s "127.0.0.1:$1/health" | grep -q '"status":"ok"' && return 0; sleep 0.1; done; echo "afw on $1 not healthy" >&2; exit 1; }
REDIS_URL_BENCH="redis://127.0.0.1:$REDIS_PORT"
start_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
  fi
  redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "$OUT/redis.log" --pidfile "$OUT/redis.pid" >/dev/null
  wait_port $REDIS_PORT
}
stop_redis() { redis-cli -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true; }

# overhead WHAT OFF_PREFIX ON_PREFIX: the median over $ROUNDS rounds of on/off throughput,
# from oha's JSON in $OUT/<prefix>-<round>.json; a non-2xx answer in the "on" runs fails.
overhead() {
  python3 - "$OUT" "$ROUNDS" "$1" "$2" "$3" <<'PY'
import sys, json, os, statistics
out, rounds, what, off_name, on_name = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def load(name): return json.load(open(os.path.join(out, name)))
ratios, on, off = [], [], []
for r in range(1, rounds + 1):
    a, b = load(f"{off_name}-{r}.json"), load(f"{on_name}-{r}.json")
    bad = sum(v for k, v in b.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
    assert bad == 0, f"round {r}: {bad} non-2xx answers with {what} on"
    off.append(a["summary"]["requestsPerSec"]); on.append(b["summary"]["requestsPerSec"])
    ratios.append(on[-1] / off[-1])
med = statistics.median(ratios)
print(f"median: on {statistics.median(on):.0f} req/s, off {statistics.median(off):.0f} req/s")
print(f"overhead of {what}, median of {rounds}: {(1 - med) * 100:.1f}% "
      f"(rounds: {', '.join(f'{(1 - x) * 100:.1f}%' for x in ratios)})")
PY
}

# per_request ENV...: instructions per POST in afw's own process (callgrind counts,
# repeatable whatever else the machine does), from the difference of a 1 000- and a
# 4 000-request run (start-up cancels out). User space only, every thread of afw's.
per_request() {
  local counts=()
  for n in 1000 4000; do
    rm -f "$OUT"/cg.*
    env RUST_LOG=warn PORT=$AFW_PORT "$@" valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
      target/release/afw >"$OUT/callgrind-afw.log" 2>"$OUT/valgrind.log" & local pid=$!
    for _ in $(seq 1 100); do curl -s "127.0.0.1:$AFW_PORT/health" >/dev/null && break; sleep 0.2; done
    oha --no-tui -n $n -c 4 -m POST -H 'content-type: application/json' \
      -H 'authorization: Bearer bench-key-0123456789' -D "$EVENT" \
      "http://127.0.0.1:$AFW_PORT/api/events" >/dev/null 2>&1
    kill -INT "$pid"; wait "$pid" 2>/dev/null || true
    counts+=("$(grep -h '^summary' "$OUT"/cg.* | awk '{print $2}')")
  done
  echo $(( (counts[1] - counts[0]) / 3000 ))
}
# instructions WHAT OFF ON: the two counts and the difference.
instructions() {
  python3 -c "print(f'instructions per request (callgrind), $1: off $2, on $3, +{$3 - $2} (+{($3 - $2) / $2 * 100:.1f}%)')"
}

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

read_load() { # 10 000 stored events, then GET them with 1 connection
  target/release/afw-bench --addr 127.0.0.1:$AFW_PORT preload --session read-bench --events 10000 --event-file "$EVENT"
  for q in "" "?limit=10000"; do
    oha --no-tui --output-format json -z "$DURATION" -c 1 "http://127.0.0.1:$AFW_PORT/api/events/read-bench$q" >"$OUT/read.json"
    printf '%-34s %s\n' "GET events${q:- (default limit 1000)}" "$(summarize "$OUT/read.json")"
  done
}

post_load() { # name port [extra oha args...]
  local name=$1 port=$2; shift 2
  oha --no-tui --output-format json -z "$DURATION" -c "$CONNS" -m POST "$@" \
    -H 'content-type: application/json' -D "$EVENT" "http://127.0.0.1:$port/api/events" >"$OUT/$name.json"
  set -- "$name"
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
read_load
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

if want 5 || want 6 || want 7 || want 8 || want 9; then
  start_redis
fi

if want 5; then
echo
echo "==> 5. Redis mode: POST /api/events, $CONNS connections, $DURATION per run, $ROUNDS alternating rounds vs memory mode"
for r in $(seq 1 "$ROUNDS"); do
  start_afw; post_load "round $r afw memory" $AFW_PORT; cp "$OUT/round $r afw memory.json" "$OUT/mem-$r.json"; stop_afw
  redis-cli -p $REDIS_PORT flushall >/dev/null
  start_afw "$REDIS_URL_BENCH"; post_load "round $r afw redis" $AFW_PORT; cp "$OUT/round $r afw redis.json" "$OUT/red-$r.json"; stop_afw
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import sys, json, os, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(name): return json.load(open(os.path.join(out, name)))
ratios, red = [], []
for r in range(1, rounds + 1):
    m, d = load(f"mem-{r}.json"), load(f"red-{r}.json")
    red.append((d["summary"]["requestsPerSec"], d["latencyPercentiles"]["p99"] * 1000))
    ratios.append(d["summary"]["requestsPerSec"] / m["summary"]["requestsPerSec"])
print(f"median: redis mode {statistics.median(x[0] for x in red):.0f} req/s, p99 {statistics.median(x[1] for x in red):.2f} ms; "
      f"redis / memory throughput {statistics.median(ratios) * 100:.1f}% "
      f"(rounds: {', '.join(f'{x * 100:.1f}%' for x in ratios)})")
PY
fi

if want 6; then
echo
echo "==> 6. Redis mode: POST on instance A -> WebSocket on instance B, 1000 events"
redis-cli -p $REDIS_PORT flushall >/dev/null
start_afw "$REDIS_URL_BENCH"; start_afw_b "$REDIS_URL_BENCH"
printf 'idle:   '; target/release/afw-bench --addr 127.0.0.1:$AFW_PORT latency --ws-addr 127.0.0.1:$AFW_B_PORT --events 1000 --interval-ms 2
sed 's/bench-session-0001/load-session/' "$EVENT" >"$OUT/load-event.json"
oha --no-tui --output-format quiet -z 20s -c 16 -m POST -H 'content-type: application/json' \
  -D "$OUT/load-event.json" "http://127.0.0.1:$AFW_PORT/api/events" >/dev/null 2>&1 & LOAD_PID=$!; PIDS+=("$LOAD_PID")
sleep 1
printf 'loaded: '; target/release/afw-bench --addr 127.0.0.1:$AFW_PORT latency --ws-addr 127.0.0.1:$AFW_B_PORT --events 1000 --interval-ms 2
kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true
stop_afw_b; stop_afw
fi

if want 7; then
echo
echo "==> 7. Redis mode: GET /api/events/:id with 10 000 stored events, 1 connection, $DURATION"
redis-cli -p $REDIS_PORT flushall >/dev/null
start_afw "$REDIS_URL_BENCH"
read_load
stop_afw
fi

if want 8; then
for persistence in "no" "yes"; do
echo
echo "==> 8. Redis mode: an outage under writes (Redis killed at 2 s, restarted at 5 s), appendonly $persistence"
stop_redis
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly $persistence --appendfsync always \
  --dir "$OUT" --daemonize yes --logfile "$OUT/redis.log" --pidfile "$OUT/redis.pid" >/dev/null
wait_port $REDIS_PORT
redis-cli -p $REDIS_PORT flushall >/dev/null
start_afw "$REDIS_URL_BENCH"
target/release/afw-bench --addr 127.0.0.1:$AFW_PORT outage \
  --kill-cmd "kill -9 \$(cat '$OUT/redis.pid')" \
  --start-cmd "redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly $persistence --appendfsync always --dir '$OUT' --daemonize yes --logfile '$OUT/redis.log' --pidfile '$OUT/redis.pid' >/dev/null"
stop_afw
done
stop_redis; start_redis
fi

if want 9; then
echo
echo "==> 9. redis-benchmark on the same Redis (Redis's own limit on this machine), 64 connections"
redis-benchmark -p $REDIS_PORT -q -n 200000 -c 64 -t set,lpush,publish 2>/dev/null | tr '\r' '\n' | grep -E "requests per second" || true
redis-cli -p $REDIS_PORT script load "return redis.call('SET', KEYS[1], ARGV[1])" >/dev/null
SHA=$(redis-cli -p $REDIS_PORT script load "return redis.call('SET', KEYS[1], ARGV[1])")
redis-benchmark -p $REDIS_PORT -q -n 200000 -c 64 evalsha "$SHA" 1 bench:key value 2>/dev/null | tr '\r' '\n' | grep -E "requests per second" | sed 's/^/EVALSHA (one SET): /' || true
fi

if want 5 || want 6 || want 7 || want 8 || want 9; then
  stop_redis
fi

if want 10; then
echo
echo "==> 10. POST /api/events with an API key and rate limits on vs both off, $CONNS connections, $ROUNDS alternating rounds"
# Same build, two instances. The guarded one checks a key (SHA-256 + constant-time compare)
# and counts every request against per-client limits set high enough never to refuse.
RUST_LOG=warn PORT=$AFW_PORT AFW_RATE_LIMIT_OFF=1 target/release/afw >"$OUT/afw-open.log" 2>&1 &
OPEN_PID=$!; PIDS+=("$OPEN_PID")
RUST_LOG=warn PORT=$AFW_B_PORT AFW_API_KEY=bench-key-0123456789 AFW_RATE_LIMIT_EVENTS=100000000 \
  target/release/afw >"$OUT/afw-guarded.log" 2>&1 &
GUARD_PID=$!; PIDS+=("$GUARD_PID")
wait_port $AFW_PORT; wait_port $AFW_B_PORT
for r in $(seq 1 "$ROUNDS"); do
  post_load "round $r off (no key, no limits)" $AFW_PORT
  cp "$OUT/round $r off (no key, no limits).json" "$OUT/open-$r.json"
  post_load "round $r on (key + limits)" $AFW_B_PORT -H 'authorization: Bearer bench-key-0123456789'
  cp "$OUT/round $r on (key + limits).json" "$OUT/guarded-$r.json"
done
kill "$OPEN_PID" "$GUARD_PID" 2>/dev/null || true
overhead "key + rate limits" open guarded
# The same comparison without the noise of shared cores.
if command -v valgrind >/dev/null 2>&1; then
  off=$(per_request AFW_RATE_LIMIT_OFF=1)
  on=$(per_request AFW_API_KEY=bench-key-0123456789 AFW_RATE_LIMIT_EVENTS=100000000)
  instructions "key + rate limits" "$off" "$on"
fi
fi

if want 11; then
echo
echo "==> 11. POST /api/events with request logs and metrics on vs AFW_OBSERVE_OFF=1, $CONNS connections, $ROUNDS alternating rounds"
# Same build, two instances, both logging at info to a file: the observed one writes one
# line per request (and draws a request id, opens a span, counts the request by route and
# status with its latency); the other has none of that.
RUST_LOG=info PORT=$AFW_PORT AFW_RATE_LIMIT_OFF=1 target/release/afw >"$OUT/afw-observed.log" 2>&1 &
OBS_PID=$!; PIDS+=("$OBS_PID")
RUST_LOG=info PORT=$AFW_B_PORT AFW_RATE_LIMIT_OFF=1 AFW_OBSERVE_OFF=1 target/release/afw >"$OUT/afw-quiet.log" 2>&1 &
QUIET_PID=$!; PIDS+=("$QUIET_PID")
wait_port $AFW_PORT; wait_port $AFW_B_PORT
for r in $(seq 1 "$ROUNDS"); do
  post_load "round $r observe off" $AFW_B_PORT
  cp "$OUT/round $r observe off.json" "$OUT/quiet-$r.json"
  post_load "round $r observe on" $AFW_PORT
  cp "$OUT/round $r observe on.json" "$OUT/observed-$r.json"
done
lines=$(grep -c 'afw::request' "$OUT/afw-observed.log" || true)
scraped=$(curl -s "127.0.0.1:$AFW_PORT/metrics" | grep -E '^afw_http_requests_total.*route="/api/events",status="201"' | awk '{s+=$2} END {print s+0}')
kill "$OBS_PID" "$QUIET_PID" 2>/dev/null || true
echo "request log lines written: $lines; /metrics counted $scraped POST /api/events 201s"
overhead "request logs + metrics" quiet observed
if command -v valgrind >/dev/null 2>&1; then
  # Both log at info (the observed one a line per request, to a file).
  off=$(per_request RUST_LOG=info AFW_RATE_LIMIT_OFF=1 AFW_OBSERVE_OFF=1)
  on=$(per_request RUST_LOG=info AFW_RATE_LIMIT_OFF=1)
  instructions "request logs + metrics" "$off" "$on"
  nolog=$(per_request RUST_LOG=warn AFW_RATE_LIMIT_OFF=1)
  instructions "request ids + HTTP metrics, no log line or span (RUST_LOG=warn)" "$off" "$nolog"
fi
fi

if want 12; then
echo
echo "==> 12. SIGTERM under a $CONNS-connection write load"
RUST_LOG=info PORT=$AFW_PORT AFW_RATE_LIMIT_OFF=1 target/release/afw >"$OUT/afw-drain.log" 2>&1 &
DRAIN_PID=$!; PIDS+=("$DRAIN_PID")
wait_port $AFW_PORT
oha --no-tui --output-format json -z 6s -c "$CONNS" -m POST -H 'content-type: application/json' \
  -D "$EVENT" "http://127.0.0.1:$AFW_PORT/api/events" >"$OUT/drain.json" &
OHA_PID=$!
sleep 3
t0=$(date +%s%N)
kill -TERM "$DRAIN_PID"
code=0; wait "$DRAIN_PID" || code=$?
t1=$(date +%s%N)
wait "$OHA_PID" || true
answered=$(grep 'afw::request' "$OUT/afw-drain.log" | grep -c 'route="/api/events"\|/api/events 201' || true)
echo "drain took $(( (t1 - t0) / 1000000 )) ms, exit code $code, request log lines $answered"
python3 - "$OUT/drain.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("answers by status:", r.get("statusCodeDistribution"))
print("client-side errors:", r.get("errorDistribution"))
PY
fi
