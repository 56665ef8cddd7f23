"""Loads a model saved by bertology (fine-tuned or pruned) with transformers 4.57.x and compares
its logits on MRPC dev with those bertology wrote to predictions.csv (`bertology eval`).

usage: check_saved_model.py MODEL_DIR PREDICTIONS_CSV [--subset N] [--max-length N]
Any family transformers' AutoModelForSequenceClassification reads (BERT, RoBERTa, DistilBERT,
ELECTRA, GPT-2, ...).
Prints the heads per layer transformers sees, the largest logit difference, and how many
predictions agree; exits 1 when the difference exceeds 1e-4 or a prediction differs.
"""
import argparse
import csv
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from common import check_versions, read_mrpc

torch.set_num_threads(2)

if __name__ == "__main__":
    check_versions()
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("predictions_csv")
    ap.add_argument("--subset", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=128)
    a = ap.parse_args()
    model = AutoModelForSequenceClassification.from_pretrained(a.model_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    if tok.pad_token is None:
        # GPT-2 has no padding token: pad with the config's pad_token_id (right padding), as bertology
        # does; the classifier reads each example's last token that is not padding.
        tok.pad_token = tok.convert_ids_to_tokens(model.config.pad_token_id)
    # Heads each attention module kept (BERT-like: num_attention_heads; DistilBERT: n_heads; GPT-2:
    # num_heads).
    heads = [getattr(m, "num_attention_heads", getattr(m, "n_heads", getattr(m, "num_heads", None)))
             for _, m in model.named_modules() if type(m).__name__.endswith(("SelfAttention", "GPT2Attention"))]
    print(f"transformers loaded {a.model_dir} as {type(model).__name__}: heads per layer {heads}, "
          f"pruned_heads {model.config.pruned_heads}")
    rows = read_mrpc("dev")[: a.subset]
    with open(a.predictions_csv) as f:
        ours = [list(map(float, r["logits"].split())) for r in csv.DictReader(f)]
    ours = torch.tensor(ours[: len(rows)])
    logits = []
    with torch.no_grad():
        for i in range(0, len(rows), 32):
            chunk = rows[i:i + 32]
            enc = tok([r[0] for r in chunk], [r[1] for r in chunk], padding="longest", truncation=True,
                      max_length=a.max_length, return_tensors="pt")
            logits.append(model(**enc).logits)
    theirs = torch.cat(logits)
    diff = (theirs - ours).abs().max().item()
    agree = (theirs.argmax(-1) == ours.argmax(-1)).sum().item()
    labels = torch.tensor([r[2] for r in rows])
    acc = (theirs.argmax(-1) == labels).float().mean().item()
    print(f"{len(rows)} MRPC dev pairs: max |logit diff| {diff:.2e}; predictions agree {agree}/{len(rows)}; "
          f"transformers accuracy {acc:.4f}")
    sys.exit(0 if diff <= 1e-4 and agree == len(rows) else 1)
