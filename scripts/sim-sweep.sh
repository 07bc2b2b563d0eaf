#!/usr/bin/env bash
# A long random sweep of simulation seeds, with progress and a summary.
#
#   scripts/sim-sweep.sh                 # 500 seeds from a random start
#   SEEDS=2000 START=0 scripts/sim-sweep.sh
#   JOBS=1 scripts/sim-sweep.sh          # one process (default: two, one per core)
#
# Built with --cfg tokio_unstable (tokio's own randomness then follows the seed, and a
# panic in any task fails the run) in its own target dir. A failing seed is printed with
# the command that replays it; the script exits 1 if any seed failed.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS="${SEEDS:-500}"
START="${START:-$(( (RANDOM << 15 | RANDOM) ))}"
CHUNK="${CHUNK:-10}"
JOBS="${JOBS:-2}"
export RUSTFLAGS="--cfg tokio_unstable"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/sim}"
echo "==> building afw-sim (release, tokio_unstable)"
cargo build -q -p afw-sim --release
BIN="$CARGO_TARGET_DIR/release/afw-sim"
OUT="$(mktemp)"; trap 'rm -f "$OUT"' EXIT
echo "==> seeds $START..$((START + SEEDS))"
started=$(date +%s)
END=$(( START + SEEDS ))
for ((s = START; s < END; s += CHUNK * JOBS)); do
  # JOBS processes side by side, one chunk each (a process runs its seeds one at a time:
  # tokio's task ids are process-wide).
  pids=()
  for ((j = 0; j < JOBS; j++)); do
    a=$(( s + j * CHUNK )); [ "$a" -lt "$END" ] || break
    e=$(( a + CHUNK < END ? a + CHUNK : END ))
    "$BIN" --seeds "$a..$e" >"$OUT.$j" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  for ((j = 0; j < ${#pids[@]}; j++)); do cat "$OUT.$j" >>"$OUT"; rm -f "$OUT.$j"; done
  e=$(( s + CHUNK * JOBS < END ? s + CHUNK * JOBS : END ))
  done_n=$(( e - START )); pct=$(( 100 * done_n / SEEDS )); bar=$(printf '%*s' $(( pct / 2 )) '' | tr ' ' '#')
  failed=$(grep -c "VIOLATED" "$OUT" || true)
  printf '\r[%-50s] %3d%% %d/%d seeds, %d failed' "$bar" "$pct" "$done_n" "$SEEDS" "$failed"
done
echo
wall=$(( $(date +%s) - started ))
grep -A20 "VIOLATED" "$OUT" | grep -vE "^seed [0-9]+: ok" || true
python3 - "$OUT" "$wall" "$SEEDS" <<'PY'
import re, sys, collections
out, wall, expected = open(sys.argv[1]).read(), max(int(sys.argv[2]), 1), int(sys.argv[3])
seeds = re.findall(r"^seed (\d+): (ok|VIOLATED);.*?faults \[(.*?)\]; (\d+) checks", out, re.M)
kinds = collections.Counter(k for _, _, f, _ in seeds
                            for k in re.findall(r'"([A-Za-z]+)(?:\([^)]*\))?@', f))
stepped = sum(float(x) for x in re.findall(r"x stepped \((\d+) s\)", out))
total_h = sum(float(x) for x in re.findall(r"idle stretches \(([\d.]+) h\)", out))
failed = [s for s, v, _, _ in seeds if v != "ok"]
lost = sum(int(x) for x in re.findall(r"(\d+) lost by plan", out))
doubt = sum(int(x) for x in re.findall(r"(\d+) input in doubt", out))
cdoubt = sum(int(x) for x in re.findall(r"(\d+) commands in doubt", out))
undone = sum(int(x) for x in re.findall(r"(\d+) deletes undone in doubt", out))
refused = sum(int(x) for x in re.findall(r"(\d+) refused but stored", out))
unanswered = sum(int(x) for x in re.findall(r"(\d+) unanswered but stored", out))
print(f"{len(seeds)} seeds in {wall} s: {len(seeds) / wall * 60:.0f} seeds/min; "
      f"simulated/wall time {stepped / wall:.0f}x stepped, "
      f"{total_h * 3600 / wall:.0f}x with the clock jumps over idle stretches "
      f"({total_h / max(len(seeds), 1):.1f} simulated hours per seed); "
      f"{sum(int(c) for *_, c in seeds)} invariant checks")
print("faults injected: " + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "none"))
print(f"acknowledged events lost by plan (Redis crashes without data): {lost}; "
      f"input items in doubt (a poll failed after they were queued): {doubt}; "
      f"commands in doubt (a claim failed after they were queued): {cdoubt}")
print(f"deletes undone in doubt: {undone}; events answered 503 and found stored by their "
      f"retry (a fault about: the reply was lost): {refused}; events unanswered and found "
      f"stored: {unanswered}")
print(f"failed seeds: {failed or 'none'}")
if len(seeds) < expected:
    print(f"{expected - len(seeds)} seeds gave no verdict (a crashed afw-sim process)")
sys.exit(1 if failed or len(seeds) < expected else 0)
PY
