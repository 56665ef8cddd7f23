"""Importance fixtures: MiniLM + the committed classifier, first 64 MRPC dev pairs, padded to 128.

importance_anchor_b1/b8.safetensors: run_bertology's algorithm at batch sizes 1 and 8.
importance_per_example.safetensors: E_x |dL(x)/dxi|.
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, BertForSequenceClassification

import anchor
from common import FIXTURES, MINILM, check_versions, read_mrpc

torch.set_num_threads(2)


def minilm_with_classifier():
    model = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2, attn_implementation="eager").eval()
    clf = load_file(os.path.join(FIXTURES, "minilm_classifier.safetensors"))
    with torch.no_grad():
        model.classifier.weight.copy_(clf["classifier.weight"])
        model.classifier.bias.copy_(clf["classifier.bias"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model


if __name__ == "__main__":
    check_versions()
    model = minilm_with_classifier()
    tok = AutoTokenizer.from_pretrained(MINILM)
    rows = read_mrpc("dev")[:64]
    for bs in (1, 8):
        ent, imp, raw, logits, labels = anchor.compute_heads_importance(model, anchor.batches(tok, rows, bs))
        save_file({"entropy": ent.contiguous(), "importance": imp.contiguous(), "raw_importance": raw.contiguous(),
                   "logits": logits.contiguous()}, os.path.join(FIXTURES, f"importance_anchor_b{bs}.safetensors"))
        print(f"anchor b{bs}: acc {anchor.accuracy(logits, labels):.4f}")
    imp, raw, logits = anchor.per_example_importance(model, anchor.batches(tok, rows, 8, pad_to_max=False))
    save_file({"importance": imp.contiguous(), "raw_importance": raw.contiguous(), "logits": logits.contiguous()},
              os.path.join(FIXTURES, "importance_per_example.safetensors"))
    print("per-example done")
