"""Loads a causal language model retrained by `bertology finetune --task lm` (GPT-2 or GPT, pruned or
not) with transformers 4.57.x and checks that it computes what bertology computes.

usage: check_finetuned_lm.py MODEL_DIR HIDDEN_STATES_DIR [TOKEN_IDS PREDICTIONS_CSV]

- MODEL_DIR is the --output-dir of `bertology finetune --task lm`.
- HIDDEN_STATES_DIR is the --output-dir of
  `bertology hidden-states --model MODEL_DIR --text "..." [--text "..."] --batch-size 1`: bertology's
  last hidden state of each text, through transformers' own output layer (the tied LM head), gives
  bertology's logits; they must equal transformers' logits on the same tokens within 1e-4.
- TOKEN_IDS and PREDICTIONS_CSV (optional): run_prune_gpt's token-id file and the predictions.csv of
  `bertology eval --model MODEL_DIR --task lm --token-ids TOKEN_IDS`; its per-line mean token losses
  must equal transformers' within 1e-4.
Exits 1 when a difference exceeds 1e-4.
"""
import csv
import json
import sys

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from common import check_versions

torch.set_num_threads(2)

if __name__ == "__main__":
    check_versions()
    model_dir, hidden_dir = sys.argv[1:3]
    ids_file, predictions = (sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else (None, None)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    heads = [getattr(m, "num_heads", None) or getattr(m, "n_head", None)
             for name, m in model.named_modules() if name.endswith(".attn")]
    print(f"transformers loaded {model_dir} ({type(model).__name__}): heads per layer {heads}, "
          f"pruned_heads {model.config.pruned_heads}")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    run = json.load(open(f"{hidden_dir}/hidden_states.json"))
    states = load_file(f"{hidden_dir}/hidden_states.safetensors")
    last = states[f"hidden_states.{model.config.num_hidden_layers}"]
    worst, tokens = 0.0, 0
    with torch.no_grad():
        for ex in run["examples"]:
            # bertology truncates to the model's positions; compare the tokens it kept.
            ids = tokenizer(ex["text_a"], return_tensors="pt").input_ids[:, : len(ex["tokens"])]
            theirs_tokens = tokenizer.convert_ids_to_tokens(ids[0])
            if theirs_tokens != ex["tokens"]:
                sys.exit(f"example {ex['row']}: tokens differ: {theirs_tokens} vs {ex['tokens']}")
            n = ids.shape[1]
            ours = model.get_output_embeddings()(last[ex["row"], :n].float())
            theirs = model(input_ids=ids).logits[0]
            worst = max(worst, (ours - theirs).abs().max().item())
            tokens += n
    ok = worst <= 1e-4
    print(f"{len(run['examples'])} texts, {tokens} tokens: max |logit diff| bertology vs transformers {worst:.2e}")
    if ids_file:
        ids = torch.tensor(np.loadtxt(ids_file, dtype=np.int64, ndmin=2))
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        per_line = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").mean(-1)
        with open(predictions) as f:
            ours = torch.tensor([float(r["loss"]) for r in csv.DictReader(f)])
        d = (per_line - ours).abs().max().item()
        ok = ok and d <= 1e-4
        print(f"{ids.shape[0]} token-id lines: max |per-line loss diff| bertology eval vs transformers {d:.2e}")
    sys.exit(0 if ok else 1)
