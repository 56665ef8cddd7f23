#!/usr/bin/env bash
# For each family's tiny fixture (tests/fixtures/families/): fine-tune a base copy on 64 MRPC
# pairs, prune half its heads with `bertology prune`, evaluate the pruned model, and check with
# transformers 4.57 (scripts/reference/check_saved_model.py) that it reloads at the pruned
# shapes with the same logits (within 1e-4). Needs scripts/setup.sh and
# scripts/setup-python-ref.sh. usage: scripts/check-families.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/bertology
py=$root/.venv-ref/bin/python
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bertology-families.XXXXXX")}
[ -x "$py" ] || { echo "check-families.sh: error: run scripts/setup-python-ref.sh first" >&2; exit 1; }
for family in bert roberta distilbert electra; do
  if [ "$family" = bert ]; then src=$root/tests/fixtures/tiny-bert; else src=$root/tests/fixtures/families/$family; fi
  work=$out/$family
  rm -rf "$work" && mkdir -p "$work/base"
  cp "$src"/* "$work/base/"
  # A base checkpoint: no classifier, no labels (fine-tuning adds a fresh 2-way head).
  "$py" - "$work/base" <<'PY'
import json, sys
from safetensors.torch import load_file, save_file
d = sys.argv[1]
w = load_file(f"{d}/model.safetensors")
save_file({k: v for k, v in w.items() if not k.startswith(("classifier.", "pre_classifier."))},
          f"{d}/model.safetensors", metadata={"format": "pt"})
c = json.load(open(f"{d}/config.json"))
for k in ("id2label", "label2id"):
    c.pop(k, None)
json.dump(c, open(f"{d}/config.json", "w"))
PY
  common=(--task mrpc --device cpu --quiet --max-seq-length 32)
  "$bin" finetune "${common[@]}" --model "$work/base" --output-dir "$work/tuned" \
    --train-subset 64 --eval-subset 64 --batch-size 8 --epochs 2 --learning-rate 1e-3
  "$bin" prune "${common[@]}" --model "$work/tuned" --data-subset 64 --target-heads 0.5 \
    --min-heads-per-layer 1 --output-dir "$work/prune"
  "$bin" eval "${common[@]}" --model "$work/prune/pruned_model" --data-subset 64 --output-dir "$work/eval"
  echo "== $family"
  (cd "$root/scripts/reference" && "$py" check_saved_model.py "$work/prune/pruned_model" \
    "$work/eval/predictions.csv" --subset 64 --max-length 32)
done
