#!/usr/bin/env bash
# Planted bugs: does the simulation catch them?
#
#   scripts/mutants.sh                                   # every mutant, seeds 0..200, at HEAD
#   SEEDS=50 scripts/mutants.sh bus-drop-when-full ws-gap-unrepaired
#   REV=0a9e651 scripts/mutants.sh                       # the same mutants, an older revision
#
# Each sim/mutants/NAME.patch is a small realistic bug in afw's production code (its first
# line says which). For each, in a scratch worktree (target/mutants/wt, never the tree you
# work in) the script applies the patch to REV, builds afw-sim (release, tokio_unstable),
# runs seeds 0..SEEDS in JOBS processes, reverts, and prints one table row: the first seed
# that catches the mutant, how many seeds catch it, and which invariants fired. The first
# row is the unpatched revision (its failures, if any, are not the mutants' doing). A
# mutant that no longer applies is reported as such. Rows also go to
# target/mutants/REV.md. It stops by itself: every sweep has a time limit (LIMIT seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SEEDS="${SEEDS:-200}"
JOBS="${JOBS:-2}"
LIMIT="${LIMIT:-1800}"
REV="$(git rev-parse --short "${REV:-HEAD}")"
WT="$ROOT/target/mutants/wt"
export RUSTFLAGS="--cfg tokio_unstable"
export CARGO_TARGET_DIR="$ROOT/target/mutants/build"
RESULTS="$ROOT/target/mutants/$REV.md"
mkdir -p "$ROOT/target/mutants"

if [ "$#" -gt 0 ]; then
  names=("$@")
else
  names=()
  for p in sim/mutants/*.patch; do names+=("$(basename "$p" .patch)"); done
fi

git worktree prune
if [ ! -e "$WT/.git" ]; then
  git worktree add -q --detach "$WT" "$REV"
fi
reset_tree() {
  git -C "$WT" checkout -q --detach --force "$REV"
  git -C "$WT" clean -qfd
}

# Runs seeds 0..SEEDS in JOBS slices; prints "caught first invariants crashed".
sweep() {
  local out; out="$(mktemp -d)"
  local per=$(( (SEEDS + JOBS - 1) / JOBS )) pids=()
  for ((j = 0; j < JOBS; j++)); do
    local a=$(( j * per )) b=$(( (j + 1) * per < SEEDS ? (j + 1) * per : SEEDS ))
    [ "$a" -lt "$b" ] || continue
    ( timeout "$LIMIT" "$CARGO_TARGET_DIR/release/afw-sim" --seeds "$a..$b" >"$out/$j" 2>&1 \
        || echo "exit $?" >>"$out/$j" ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  python3 - "$out" "$SEEDS" <<'PY'
import collections, os, re, sys
out, total = sys.argv[1], int(sys.argv[2])
text = "".join(open(os.path.join(out, f)).read() for f in sorted(os.listdir(out)))
seen = [int(s) for s in re.findall(r"^seed (\d+): ", text, re.M)]
caught = sorted(int(s) for s in re.findall(r"^seed (\d+): VIOLATED", text, re.M))
inv = collections.Counter(re.findall(r"^  invariant (\d+)", text, re.M))
kinds = ",".join(f"{k}x{n}" for k, n in sorted(inv.items())) or "-"
missing = total - len(set(seen))
print(len(caught), caught[0] if caught else "-", kinds, missing)
PY
  rm -rf "$out"
}

row() {
  local name="$1" what="$2"
  local started; started=$(date +%s)
  if ! cargo build -q -p afw-sim --release --manifest-path "$WT/Cargo.toml" 2>"$ROOT/target/mutants/build.log"; then
    printf '| %s | does not build | | | | %s |\n' "$name" "$what" | tee -a "$RESULTS"
    return
  fi
  read -r caught first kinds missing < <(sweep)
  local note=""
  [ "$missing" -eq 0 ] || note=" ($missing seeds did not finish in ${LIMIT} s)"
  printf '| %s | %s | %s of %s (%s%%) | %s | %ss | %s%s |\n' "$name" "$first" "$caught" "$SEEDS" \
    "$(( 100 * caught / SEEDS ))" "$kinds" "$(( $(date +%s) - started ))" "$what" "$note" \
    | tee -a "$RESULTS"
}

echo "==> revision $REV, seeds 0..$SEEDS, $JOBS processes; rows also in ${RESULTS#"$ROOT"/}"
echo "| mutant | first catching seed | seeds catching it | invariants (violations) | time | what it plants |"
echo "|---|---|---|---|---|---|"
reset_tree
row "(none: the revision as it is)" "baseline"
for name in "${names[@]}"; do
  patch="$ROOT/sim/mutants/$name.patch"
  [ -f "$patch" ] || { echo "no such mutant: $name" >&2; exit 2; }
  reset_tree
  if ! git -C "$WT" apply "$patch" 2>/dev/null; then
    printf '| %s | does not apply at %s | | | | %s |\n' "$name" "$REV" "$(head -1 "$patch")" | tee -a "$RESULTS"
    continue
  fi
  row "$name" "$(head -1 "$patch")"
done
reset_tree
