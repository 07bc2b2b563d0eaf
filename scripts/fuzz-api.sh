#!/usr/bin/env bash
# Fuzzes afw's HTTP API from its own OpenAPI document with schemathesis: a release build,
# once with memory storage and once against a real redis-server, every check schemathesis
# has (no 5xx, every status, header and body as documented, schema-valid requests accepted,
# schema-violating ones refused, stateful sequences that follow the document's links).
#
#   scripts/fuzz-api.sh                   # both modes, FUZZ_CASES=100 examples per operation
#   FUZZ_CASES=20 scripts/fuzz-api.sh     # what scripts/test.sh runs (bounded)
#   FUZZ_MODES=memory FUZZ_SEED=42 scripts/fuzz-api.sh   # one mode, a fixed seed (replay)
#
# Targets 127.0.0.1 only; every server it starts stops with it. schemathesis is installed,
# pinned, into a virtualenv the script makes (target/fuzz/venv, from PyPI). Reports (JUnit)
# and the servers' logs go to target/fuzz/. Exit status: 0 when every mode found nothing.
#
# What is not fuzzed, and why: GET /ws (a WebSocket upgrade: its frames are covered by the
# property tests of src/http/ws/protocol.rs); the input long poll's `timeout`, which is
# always 50 ms here (or a run would spend most of its time waiting: scripts/fuzz-api.toml);
# and the
# use-after-free check, which expects every URL under a deleted session to answer 404,
# while polling the commands, input or events of a session that does not exist (yet) is
# the contract's normal case (hooks poll before their first event) and answers empty.
set -euo pipefail
cd "$(dirname "$0")/.."

CASES="${FUZZ_CASES:-100}"
MODES="${FUZZ_MODES:-memory redis}"
SEED="${FUZZ_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
SCHEMATHESIS_VERSION=4.32.5
OUT=target/fuzz
VENV="${FUZZ_VENV:-$OUT/venv}"
mkdir -p "$OUT"

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $VENV (PyPI)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "==> building afw (release)"
cargo build -q --release --locked --bin afw
AFW=target/release/afw

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$1/ready" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "afw on port $1 did not become ready" >&2
  return 1
}

failed=0
for mode in $MODES; do
  port=$(free_port)
  # The history routes are fuzzed over a real directory archive of the run's own.
  rm -rf "$OUT/history-$mode"
  env_args=(PORT="$port" AFW_RATE_LIMIT_OFF=1 RUST_LOG=warn AFW_ARCHIVE="dir:$OUT/history-$mode")
  if [ "$mode" = redis ]; then
    command -v redis-server >/dev/null || { echo "redis-server is needed for the redis mode" >&2; exit 1; }
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no \
      >"$OUT/redis.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
    env_args+=(REDIS_URL="redis://127.0.0.1:$rport")
  fi
  env "${env_args[@]}" "$AFW" >"$OUT/afw-$mode.log" 2>&1 &
  PIDS+=($!)
  wait_ready "$port"
  curl -fsS "http://127.0.0.1:$port/api/openapi.json" >"$OUT/openapi-$mode.json"
  echo "==> schemathesis: $mode mode, $CASES examples per operation, seed $SEED"
  set +e
  "$VENV/bin/schemathesis" --config-file scripts/fuzz-api.toml \
    run "$OUT/openapi-$mode.json" \
    --url "http://127.0.0.1:$port" \
    --checks all \
    --exclude-checks use_after_free \
    --exclude-path /ws \
    --max-examples "$CASES" \
    --seed "$SEED" \
    --workers 1 \
    --request-timeout 10 \
    --suppress-health-check all \
    --no-color \
    --report junit --report-dir "$OUT/report-$mode" \
    >"$OUT/schemathesis-$mode.txt" 2>&1
  rc=$?
  set -e
  summary=$(grep -E "generated|passed|failures|No issues found" "$OUT/schemathesis-$mode.txt" | tail -3)
  echo "$summary"
  if [ "$rc" -ne 0 ]; then
    echo "schemathesis found problems in $mode mode (exit $rc); the report follows"
    sed -n '/FAILURES\|ERRORS/,$p' "$OUT/schemathesis-$mode.txt" | head -200
    failed=$((failed + 1))
  fi
  if grep -qE "panicked|ERROR" "$OUT/afw-$mode.log"; then
    echo "afw logged a panic or an error in $mode mode:"
    grep -E "panicked|ERROR" "$OUT/afw-$mode.log" | head -20
    failed=$((failed + 1))
  fi
  cleanup
  PIDS=()
done
echo "fuzz: seed $SEED, modes: $MODES, $failed failing"
[ "$failed" -eq 0 ]
