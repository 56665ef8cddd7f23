"""Loads a language model pruned by bertology (GPT-2, GPT, or BERT / RoBERTa with an MLM head) with
transformers 4.57.x and checks it.

usage: check_gpt_saved_model.py ORIGINAL_DIR PRUNE_RUN_DIR TOKEN_IDS [PREDICTIONS_CSV]

- PRUNE_RUN_DIR is the --output-dir of `bertology prune --task lm` (pruned_model/, head_mask.npy).
- The pruned checkpoint's logits on TOKEN_IDS (run_prune_gpt's format) must equal, within 1e-4, the
  logits of the original checkpoint with head_mask.npy applied, both computed by transformers.
- PREDICTIONS_CSV (optional) is the predictions.csv of `bertology eval --task lm --token-ids TOKEN_IDS`
  on the pruned model: its per-line mean token losses must equal transformers' within 1e-4 (causal
  models only: masked-LM losses depend on bertology's seeded masks).
Exits 1 when a difference exceeds 1e-4.
"""
import csv
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

from common import check_versions

torch.set_num_threads(2)

if __name__ == "__main__":
    check_versions()
    original_dir, run_dir, ids_file = sys.argv[1:4]
    predictions = sys.argv[4] if len(sys.argv) > 4 else None
    ids = torch.tensor(np.loadtxt(ids_file, dtype=np.int64, ndmin=2))
    masked = any(a.endswith("MaskedLM") for a in AutoConfig.from_pretrained(original_dir).architectures or [])
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    original = auto.from_pretrained(original_dir, attn_implementation="eager").eval()
    pruned = auto.from_pretrained(f"{run_dir}/pruned_model", attn_implementation="eager").eval()
    heads = [m.num_heads if hasattr(m, "num_heads") else getattr(m, "n_head", None) or m.num_attention_heads
             for name, m in pruned.named_modules() if name.endswith((".attn", ".attention.self"))]
    print(f"transformers loaded {run_dir}/pruned_model ({type(pruned).__name__}): heads per layer {heads}, "
          f"pruned_heads {pruned.config.pruned_heads}")
    mask = torch.tensor(np.load(f"{run_dir}/head_mask.npy")).float()
    with torch.no_grad():
        theirs = pruned(input_ids=ids)
        reference = original(input_ids=ids, head_mask=mask)
    diff = (theirs.logits - reference.logits).abs().max().item()
    ok = diff <= 1e-4
    print(f"{ids.shape[0]} sequences x {ids.shape[1]} tokens: max |logit diff| pruned vs original+head_mask {diff:.2e}")
    if predictions and not masked:
        with open(predictions) as f:
            ours = torch.tensor([float(r["loss"]) for r in csv.DictReader(f)])
        tok = torch.nn.functional.cross_entropy(theirs.logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        per_line = tok.mean(-1)
        d = (per_line - ours).abs().max().item()
        ok = ok and d <= 1e-4
        print(f"bertology eval on the pruned model: max |per-line loss diff| vs transformers {d:.2e}")
    sys.exit(0 if ok else 1)
