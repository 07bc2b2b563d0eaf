#!/usr/bin/env bash
# Runs every test of afw: formatting, lints, and the whole test suite.
# This is what CI runs (.ci/run) and what the README tells you to run.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds once from a clean clone: incremental caches only cost disk there (a clean clone
# builds two trees, target/debug and target/sim; see "Disk" in the README).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# The Redis tests start their own redis-server processes on free ports (so they can kill
# and restart them); they need the binaries, from Debian's packages.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  echo "==> installing redis-server (Debian package) for the Redis tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

# The archive tests (tests/archive) start their own PostgreSQL servers on free ports, from
# Debian's binaries (/usr/lib/postgresql/<version>/bin; run as the postgres user when root).
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "==> installing postgresql (Debian package) for the archive tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
ls -d /usr/lib/postgresql/*/bin/postgres

# The browser tests (tests/ui) drive Debian's chromium through chromedriver (the
# chromium-driver package); headless, as root with --no-sandbox.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "==> installing chromium and chromium-driver (Debian packages) for the browser tests"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
chromium --version 2>/dev/null

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# Supply chain (deny.toml): licences, banned and duplicate crates, sources, and RustSec's
# advisories. cargo-deny is installed (pinned) when missing.
DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -qF "$DENY_VERSION"; then
  echo "==> installing cargo-deny $DENY_VERSION (cargo install, about 3 minutes)"
  cargo install --locked --quiet cargo-deny --version "$DENY_VERSION"
fi
echo "==> cargo deny check licenses bans sources"
cargo deny --log-level error check licenses bans sources
echo "==> cargo deny check advisories"
# The advisory database is a git repository on GitHub: where it cannot be fetched (this
# project's CI machines reach only the package registries) that is said, loudly, and the
# other checks still hold. Any other failure, a found advisory included, fails the run.
if ! deny_out=$(cargo deny --log-level error check advisories 2>&1); then
  if grep -q "failed to fetch advisory database" <<<"$deny_out"; then
    echo "advisories NOT checked: RustSec's advisory database (github.com) is unreachable"
  else
    echo "$deny_out"
    exit 1
  fi
fi

echo "==> cargo test"
cargo test --workspace --locked "$@"

# The deployment files (docs/deploy/), with promtool, nginx and systemd-analyze.
scripts/check-deploy.sh

# The API fuzzed from its own OpenAPI document with schemathesis, memory and Redis mode
# (release build, own venv; a fresh seed each run, printed for replay). Bounded here; the
# script's default (100 examples per operation) is the full run.
FUZZ_CASES="${FUZZ_CASES:-20}" scripts/fuzz-api.sh

# The deterministic simulation: a fixed seed set (regressions) plus a fresh random batch
# (exploration), built with --cfg tokio_unstable in its own target dir. A failing seed is
# printed with its violations and the command that replays it.
export RUSTFLAGS="--cfg tokio_unstable"
export CARGO_TARGET_DIR="${SIM_TARGET_DIR:-target/sim}"
# Both in the release profile: the determinism tests share the sweep binary's dependencies
# instead of building a third tree.
echo "==> simulation: determinism tests (release, tokio_unstable)"
cargo test -q -p afw-sim --release --locked --test determinism
echo "==> simulation: building afw-sim (release, tokio_unstable)"
cargo build -q -p afw-sim --release --locked
SIM="$CARGO_TARGET_DIR/release/afw-sim"
SIM_OUT="$(mktemp -d)"; trap 'rm -rf "$SIM_OUT"' EXIT
start=$(( (RANDOM << 15 | RANDOM) ))
# The two batches in parallel, one process each (a process runs its seeds one at a time:
# tokio's task ids are process-wide), then reported in order.
ranges=("0..50" "$start..$((start + 50))")
pids=()
for i in 0 1; do
  "$SIM" --seeds "${ranges[$i]}" >"$SIM_OUT/$i" 2>&1 &
  pids+=($!)
done
sim_failed=0
for i in 0 1; do
  echo "==> simulation: seeds ${ranges[$i]}"
  if ! wait "${pids[$i]}"; then
    n=$(grep -c "VIOLATED" "$SIM_OUT/$i" || true)
    # A batch that failed without a violated seed crashed: count it, never pass it.
    [ "$n" -gt 0 ] || { echo "afw-sim --seeds ${ranges[$i]} failed without a verdict"; n=1; }
    sim_failed=$((sim_failed + n))
  fi
  grep -vE "^seed [0-9]+: ok" "$SIM_OUT/$i" || true
done
echo "simulation: $((100 - sim_failed)) passed, $sim_failed failed"
[ "$sim_failed" -eq 0 ]
