# Sourced by the benchmark scripts (bench.sh, bench-archive.sh), never run alone: the load
# generator (oha, installed from crates.io when missing), a file-descriptor limit for many
# connections, the release build, and wait_port.

if ! command -v oha >/dev/null 2>&1; then
  echo "==> installing oha (HTTP load generator) from crates.io"
  cargo install oha --locked --quiet
  export PATH="$HOME/.cargo/bin:$PATH"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "==> building (release)"
cargo build --release --quiet --bins

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most).
wait_port() { for _ in $(seq 1 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
