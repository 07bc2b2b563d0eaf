#!/usr/bin/env bash
# Starts a local Redis for development with append-only persistence (AOF, fsync every
# second), so sessions survive a Redis restart. Data goes to ./data/redis.
#
#   scripts/redis-dev.sh            # port 6379
#   PORT=6380 scripts/redis-dev.sh
#
# Then: REDIS_URL=redis://127.0.0.1:6379 cargo run --release
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-6379}"
if ! command -v redis-server >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server
fi
mkdir -p data/redis
exec redis-server --port "$PORT" --bind 127.0.0.1 --dir "$PWD/data/redis" \
  --appendonly yes --appendfsync everysec --save "" \
  --maxmemory-policy noeviction
