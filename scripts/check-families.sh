#!/usr/bin/env bash
# For each family's tiny fixture (tests/fixtures/families/, tiny-bert, tiny-gpt2): fine-tune a
# base copy on 64 MRPC pairs, prune half its heads with `bertology prune`, evaluate the pruned
# model, and check with transformers 4.57 (scripts/reference/check_saved_model.py) that it
# reloads at the pruned shapes with the same logits (within 1e-4). Then the masked-LM objective:
# `bertology prune --task mlm` on the tiny BERT and RoBERTa with MLM heads over MRPC dev text,
# checked by scripts/reference/check_gpt_saved_model.py (the reloaded pruned model against the
# original with the head mask, and bertology's per-block masked-LM losses against transformers').
# Last, the Llama family pruned by heads and by groups, reloaded with trust_remote_code.
# Needs scripts/setup.sh and scripts/setup-python-ref.sh. usage: scripts/check-families.sh [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/bertology
py=$root/.venv-ref/bin/python
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/bertology-families.XXXXXX")}
[ -x "$py" ] || { echo "check-families.sh: error: run scripts/setup-python-ref.sh first" >&2; exit 1; }
for family in bert roberta distilbert electra gpt2; do
  case $family in
    bert) src=$root/tests/fixtures/tiny-bert ;;
    gpt2) src=$root/tests/fixtures/tiny-gpt2 ;;
    *) src=$root/tests/fixtures/families/$family ;;
  esac
  # GPT-2 reads MRPC pairs whole (up to 256 tokens, of many lengths), so its batches hold padding.
  if [ "$family" = gpt2 ]; then len=256; else len=32; fi
  work=$out/$family
  rm -rf "$work" && mkdir -p "$work/base"
  cp "$src"/* "$work/base/"
  # A base checkpoint: no classifier, no labels (fine-tuning adds a fresh 2-way head). GPT-2's
  # classifier needs a pad_token_id: its end-of-text token, as one sets it for the real gpt2; and
  # tiny-gpt2's 16 positions get 240 more, drawn as the fixture drew its weights (std 0.4).
  "$py" - "$work/base" <<'PY'
import json, sys
from safetensors.torch import load_file, save_file
d = sys.argv[1]
w = load_file(f"{d}/model.safetensors")
c = json.load(open(f"{d}/config.json"))
for k in ("id2label", "label2id"):
    c.pop(k, None)
if c["model_type"] == "gpt2":
    c["pad_token_id"] = c["eos_token_id"]
    import torch
    wpe = w["transformer.wpe.weight"]
    more = torch.randn(256 - wpe.shape[0], wpe.shape[1], generator=torch.Generator().manual_seed(1)) * 0.4
    w["transformer.wpe.weight"] = torch.cat([wpe, more])
    c["n_positions"] = 256
save_file({k: v for k, v in w.items() if not k.startswith(("classifier.", "pre_classifier.", "score."))},
          f"{d}/model.safetensors", metadata={"format": "pt"})
json.dump(c, open(f"{d}/config.json", "w"))
PY
  common=(--task mrpc --device cpu --quiet --max-seq-length "$len")
  "$bin" finetune "${common[@]}" --model "$work/base" --output-dir "$work/tuned" \
    --train-subset 64 --eval-subset 64 --batch-size 8 --epochs 2 --learning-rate 1e-3
  "$bin" prune "${common[@]}" --model "$work/tuned" --data-subset 64 --target-heads 0.5 \
    --min-heads-per-layer 1 --timing-runs 1 --output-dir "$work/prune"
  "$bin" eval "${common[@]}" --model "$work/prune/pruned_model" --data-subset 64 --output-dir "$work/eval"
  echo "== $family"
  (cd "$root/scripts/reference" && "$py" check_saved_model.py "$work/prune/pruned_model" \
    "$work/eval/predictions.csv" --subset 64 --max-length "$len")
done
# Masked LM: the first 40 MRPC dev sentences as one text, in blocks of 16 tokens (the tiny
# models' positions).
text=$out/mrpc-dev.txt
"$py" - "$text" "$root/scripts/reference" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
from common import read_mrpc
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(r[0] for r in read_mrpc("dev")[:40]))
PY
for family in bert roberta; do
  model=$root/tests/fixtures/tiny-$family-mlm
  work=$out/$family-mlm
  rm -rf "$work"
  lm=(--task mlm --device cpu --quiet --text "$text" --block-size 16 --seed 42)
  "$bin" prune "${lm[@]}" --model "$model" --target-heads 0.5 --min-heads-per-layer 1 --timing-runs 1 --output-dir "$work/prune"
  "$bin" eval "${lm[@]}" --model "$work/prune/pruned_model" --output-dir "$work/eval"
  echo "== $family masked LM"
  (cd "$root/scripts/reference" && "$py" check_gpt_saved_model.py "$model" "$work/prune" "$text" \
    "$work/eval/predictions.csv" --text --block-size 16 --seed 42)
done
# Llama, Mistral and Qwen2 (grouped-query attention): `prune --task lm` by query heads and by
# whole key/value groups on WikiText-2 valid, then transformers loads each pruned model through
# the modelling file bertology saves beside it (trust_remote_code) and its logits must equal the
# original's with the head mask as o_proj pre-hooks (scripts/reference/check_llama_pruned.py).
wikitext=${WIKITEXT_DIR:-$root/../shared/data/wikitext-2}/valid.txt
# "uniform": whole groups, as many in every layer (--uniform-heads), so the pruned model is a
# plain config that transformers' own class loads without the modelling file.
for family in llama mistral qwen2; do
  for unit in head group uniform; do
    work=$out/$family-$unit
    rm -rf "$work"
    how=(--prune-unit "$unit" --target-heads 0.4)
    [ "$unit" = uniform ] && how=(--prune-unit group --uniform-heads --target-heads 0.5)
    "$bin" prune --task lm --device cpu --quiet --model "$root/tests/fixtures/families/$family" \
      --text "$wikitext" --block-size 12 --data-subset 64 "${how[@]}" \
      --timing-runs 1 --output-dir "$work"
    if [ "$unit" = uniform ] && [ -e "$work/pruned_model/modeling_bertology.py" ]; then
      echo "check-families.sh: $family pruned uniformly still needs a modelling file" >&2; exit 1
    fi
    echo "== $family by $unit"
    (cd "$root/scripts/reference" && "$py" check_llama_pruned.py "$root/tests/fixtures/families/$family" \
      "$work" "$wikitext" --block-size 12)
  done
done
