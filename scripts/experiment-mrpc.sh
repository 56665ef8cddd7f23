#!/usr/bin/env bash
# The paper's comparison on our own model: does masking heads in order of importance beat the
# reverse and random orders at the same budgets? Fine-tunes (or reuses) the default MRPC model,
# computes importance, prunes with the three orders at keep 90/70/50/30 % of the heads, and
# writes comparison.csv and a picture (pruning_curve.png, one line per order).
#
# usage: scripts/experiment-mrpc.sh [--quick] [--out DIR]
#   --quick  a small run for CI: a model fine-tuned for a few steps, 32 dev pairs (about 2 min)
#   --out    output folder (default runs/experiment-mrpc, or runs/experiment-mrpc-quick)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
quick=0
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "experiment-mrpc.sh: error: unknown argument $1 (expected --quick or --out DIR)" >&2; exit 2 ;;
  esac
done
bin=$root/target/release/bertology
[ -x "$bin" ] || { echo "experiment-mrpc.sh: error: $bin is missing; run scripts/setup.sh" >&2; exit 1; }
if [ "$quick" = 1 ]; then
  out=${out:-runs/experiment-mrpc-quick}
  subset=(--data-subset 32)
  timing=(--timing-runs 1)
else
  out=${out:-runs/experiment-mrpc}
  subset=()
  timing=(--timing-runs 1)
fi
mkdir -p "$out"
log() { echo "experiment-mrpc.sh: $*" >&2; }

# 1. The model: fine-tuned for a few steps in quick mode, else the default (built if missing).
if [ "$quick" = 1 ]; then
  model=$out/model
  log "fine-tuning a quick model"
  "$bin" finetune --task mrpc --quiet --json --train-subset 128 --eval-subset 32 --epochs 1 \
    --batch-size 16 --output-dir "$model" >"$out/finetune.json"
else
  model=$root/models/all-MiniLM-L6-v2-mrpc
  if [ ! -f "$model/config.json" ]; then
    log "building the default model (bertology finetune --task mrpc)"
    "$bin" finetune --task mrpc --quiet --json --overwrite >"$out/finetune.json"
  fi
fi

# 2. Importance and entropy of every head.
log "importance"
"$bin" importance --task mrpc --quiet --json --model "$model" "${subset[@]}" \
  --output-dir "$out/importance" >"$out/importance.json"

# 3. The three orders at the same budgets.
echo "order,keep_fraction,heads_kept,score,pruned_score,metric" >"$out/comparison.csv.tmp"
for order in importance reverse random; do
  for keep in 0.9 0.7 0.5 0.3; do
    log "prune --order $order --target-heads $keep"
    run=$out/prune-$order-$keep
    "$bin" prune --task mrpc --quiet --json --model "$model" "${subset[@]}" "${timing[@]}" \
      --order "$order" --target-heads "$keep" --output-dir "$run" >"$run.json"
    python3 - "$run.json" "$order" "$keep" >>"$out/comparison.csv.tmp" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]},{sys.argv[3]},{r['heads_kept']},{r['masked_score']},{r['pruned_score']},{r['metric']}")
PY
  done
done
mv "$out/comparison.csv.tmp" "$out/comparison.csv"

# 4. One picture: the full masking curve of each order (its 30 % run passes every budget).
"$bin" report --quiet --compare "$out/prune-importance-0.3" "$out/prune-reverse-0.3" "$out/prune-random-0.3" \
  --output-dir "$out"

# 5. Check our own outputs: they exist and parse.
python3 - "$out" <<'PY'
import csv, json, os, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "comparison.csv"))))
assert len(rows) == 12, f"comparison.csv has {len(rows)} rows, expected 12"
for r in rows:
    keep = float(r["keep_fraction"])
    assert int(r["heads_kept"]) == round(keep * 72), r
    assert 0.0 <= float(r["score"]) <= 1.0, r
    run = os.path.join(out, f"prune-{r['order']}-{r['keep_fraction']}")
    for f in ["prune.json", "masking_curve.csv", "head_mask.npy", "report.md", "pruning_curve.png", "pruned_model/model.safetensors"]:
        assert os.path.isfile(os.path.join(run, f)), f"{run}/{f} missing"
    json.load(open(os.path.join(run, "prune.json")))
imp = json.load(open(os.path.join(out, "importance", "importance.json")))
assert imp["layers"] * imp["heads"] == 72
for f in ["pruning_curve.png", "pruning_curve.svg"]:
    assert os.path.getsize(os.path.join(out, f)) > 1000, f
print("order       keep  heads  score")
for r in rows:
    print(f"{r['order']:<11} {r['keep_fraction']:<5} {r['heads_kept']:>5}  {float(r['score']):.4f}")
PY
log "wrote $out/comparison.csv and $out/pruning_curve.png"
