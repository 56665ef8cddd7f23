#!/usr/bin/env bash
# Are nine heads better than one? Michel et al.'s study on a real grouped-query LLM:
# SmolLM2-135M-Instruct (30 layers x 9 query heads, 3 key/value heads; the GGUF scripts/setup.sh
# installs) on WikiText-2. Heads are ranked on valid.txt; perplexity is measured on the first
# TEST_BLOCKS blocks of 128 tokens of test.txt (the same blocks for every run).
#
# 1. importance (per query head and per key/value group) on valid.txt;
# 2. masking by importance (re-estimated every step), in reverse order and in random order, by
#    query heads and by whole key/value groups, 10 % of the 270 heads (27 heads = 9 groups) per
#    step down to 10 % kept; every step's mask is scored on test.txt (`eval --head-mask`):
#    comparison.csv and perplexity_vs_heads.png (one curve per order and unit);
# 3. the effect of masking one head at a time on test.txt (Table 1: how many hurt, how many
#    help; a heatmap of the drop) and, in the full run, of keeping only one head in a layer
#    (Table 2's question);
# 4. the pruned models' size and speed (prune.json's timing: tokens per second, no gradient);
#    heads kept per layer (the prune runs' importance.png: faded heads are gone).
#
# usage: scripts/experiment-llm.sh [--quick] [--out DIR]
#   --quick  what CI runs: 2 ranking blocks, 2 test blocks, 25 % per step down to 25 %, single
#            heads ablated on one block (about 10 minutes on 2 cores)
#   --out    output folder (default runs/experiment-llm, or runs/experiment-llm-quick)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "experiment-llm.sh: error: unknown argument $1 (expected --quick or --out DIR)" >&2; exit 2 ;;
  esac
done
bin=$root/target/release/bertology
model=$root/models/SmolLM2-135M-Instruct.Q4_1.gguf
for f in "$bin" "$model" "$root/data/wikitext-2/valid.txt"; do
  [ -e "$f" ] || { echo "experiment-llm.sh: error: $f is missing; run scripts/setup.sh" >&2; exit 1; }
done
if [ "$quick" = 1 ]; then
  out=${out:-runs/experiment-llm-quick}
  rank_blocks=2; test_blocks=2; ablate_blocks=1; amount=0.25; floor=0.25; timing=1; single=()
else
  out=${out:-runs/experiment-llm}
  rank_blocks=32; test_blocks=32; ablate_blocks=8; amount=0.1; floor=0.1; timing=3; single=(--single-head)
fi
mkdir -p "$out"
log() { echo "experiment-llm.sh: $*" >&2; }
lm=(--task lm --model "$model" --block-size 128 --batch-size 8 --quiet --json)
rank=("${lm[@]}" --text data/wikitext-2/valid.txt --data-subset "$rank_blocks")
test=("${lm[@]}" --text data/wikitext-2/test.txt --data-subset "$test_blocks")
py() { python3 "$root/scripts/experiment_llm.py" "$@"; }

log "importance on $rank_blocks blocks of valid.txt"
"$bin" importance "${rank[@]}" --output-dir "$out/importance" >"$out/importance.json"
log "perplexity of the unmasked model on $test_blocks blocks of test.txt"
"$bin" eval "${test[@]}" --output-dir "$out/eval-base" >"$out/eval-base.json"

# Every step of a prune run scored on test.txt: its head mask (and neuron mask) through
# `eval`, then the run's curve with test perplexity in place of the ranking score.
score_steps() {
  local name=$1
  mkdir -p "$out/evals/$name"
  py masks "$out/$name" "$out/masks/$name" | while read -r step kept; do
    local s; s=$(printf %03d "$step")
    local neurons=()
    [ -f "$out/masks/$name/neurons_$s.npy" ] && neurons=(--neuron-mask "$out/masks/$name/neurons_$s.npy")
    "$bin" eval "${test[@]}" --head-mask "$out/masks/$name/step_$s.npy" "${neurons[@]}" \
      --output-dir "$out/evals/$name/step_$s" \
      >"$out/evals/$name/step_$s.json" 2>"$out/evals/$name.log" \
      || { cat "$out/evals/$name.log" >&2; exit 1; }
  done
  py curve "$out/$name" "$out/evals/$name" "$out/test-${name#prune-}"
}

runs=()
for unit in head group; do
  for order in importance reverse random; do
    name=prune-$unit-$order
    log "$name: masking down to $floor of the heads, $amount per step"
    "$bin" prune "${rank[@]}" --prune-unit "$unit" --order "$order" --target-heads "$floor" \
      --masking-amount "$amount" --timing-runs "$timing" --output-dir "$out/$name" >"$out/$name.json"
    score_steps "$name"
    runs+=("$out/test-$unit-$order")
  done
done
log "perplexity against heads kept (one curve per order and unit)"
"$bin" report --quiet --compare "${runs[@]}" --output-dir "$out/curves"
cp "$out/curves/pruning_curve.png" "$out/perplexity_vs_heads.png"
cp "$out/curves/pruning_curve.svg" "$out/perplexity_vs_heads.svg"

# Heads against MLP neurons at equal size: query heads, intermediate neurons, or both in the
# same steps, by importance, down to the same fraction of each.
sized=("$out/test-head-importance")
for units in neurons both; do
  name=prune-$units-importance
  heads=()
  [ "$units" = both ] && heads=(--target-heads "$floor")
  log "$name: masking down to $floor of the $units, $amount per step"
  "$bin" prune "${rank[@]}" --units "$units" "${heads[@]}" --target-neurons "$floor" \
    --masking-amount "$amount" --timing-runs "$timing" --output-dir "$out/$name" >"$out/$name.json"
  score_steps "$name"
  sized+=("$out/test-$units-importance")
done
log "perplexity against parameters kept (heads, neurons, both)"
"$bin" report --quiet --compare "${sized[@]}" --output-dir "$out/sizes"
cp "$out/sizes/pruning_curve.png" "$out/perplexity_vs_parameters.png"
cp "$out/sizes/pruning_curve.svg" "$out/perplexity_vs_parameters.svg"

log "single-head ablation on $ablate_blocks blocks of test.txt"
"$bin" ablate "${lm[@]}" --text data/wikitext-2/test.txt --data-subset "$ablate_blocks" \
  "${single[@]}" --output-dir "$out/ablation" >"$out/ablation.json"

py table "$out"
# Check our own outputs: every picture is there and not empty, every run has its curve.
python3 - "$out" <<'PY'
import csv, os, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "comparison.csv"))))
runs = {(r["unit"], r["order"]) for r in rows}
assert len(runs) == 8, runs
for unit, order in runs:
    pts = [r for r in rows if (r["unit"], r["order"]) == (unit, order)]
    assert int(pts[0]["heads_kept"]) == 270, pts[0]
    if unit == "group":
        assert all(int(r["heads_kept"]) % 3 == 0 for r in pts), pts
    # Fewer parameters at every step: the masks' sizes are what the x axis shows.
    sizes = [int(r["parameters_kept"]) for r in pts]
    assert all(a > b for a, b in zip(sizes, sizes[1:])), (unit, order, sizes)
    if unit == "neurons":
        assert all(int(r["heads_kept"]) == 270 for r in pts), pts
for f in ["perplexity_vs_heads.png", "perplexity_vs_parameters.png", "importance/importance.png", "ablation/ablation.png",
          "prune-head-importance/importance.png", "prune-group-importance/importance.png"]:
    assert os.path.getsize(os.path.join(out, f)) > 1000, f
print(f"experiment-llm.sh: {len(rows)} points over 8 runs; pictures in {out}")
PY
