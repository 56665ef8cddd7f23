"""Masking fixture: run_bertology's mask_heads on MiniLM + the committed classifier, the first 64
MRPC dev pairs, batch size 1, padded to 128, threshold 0.9, amount 0.1 (the anchor's defaults).

masking_anchor.json: the curve [(heads kept, accuracy)], the original score, and the final mask.
"""
import json
import os

import torch
from transformers import AutoTokenizer

import anchor
from common import FIXTURES, MINILM, check_versions, read_mrpc
from make_importance_fixtures import minilm_with_classifier

torch.set_num_threads(2)

if __name__ == "__main__":
    check_versions()
    model = minilm_with_classifier()
    tok = AutoTokenizer.from_pretrained(MINILM)
    rows = read_mrpc("dev")[:64]
    loader = list(anchor.batches(tok, rows, 1))
    mask, curve, original = anchor.mask_heads(model, loader)
    with open(os.path.join(FIXTURES, "masking_anchor.json"), "w") as f:
        json.dump({"examples": 64, "batch_size": 1, "max_seq_length": 128, "threshold": 0.9, "amount": 0.1,
                   "original_score": original, "curve": curve, "final_mask": mask.int().tolist()}, f, indent=1)
    print("curve", curve)
