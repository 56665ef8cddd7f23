"""Loads a Llama, Mistral or Qwen2 model pruned by bertology with transformers 4.57.x
(`trust_remote_code=True`: the modelling file bertology saves beside the weights) and checks that
its logits equal, within 1e-4, the original model's with the run's head mask applied as forward
pre-hooks on o_proj (llama_head_mask.py).

usage: check_llama_pruned.py ORIGINAL PRUNE_RUN_DIR TEXT [--block-size N] [--blocks N] [--float64]

- ORIGINAL is the model folder `bertology prune` read; PRUNE_RUN_DIR its --output-dir
  (pruned_model/, head_mask.npy).
- TEXT is a UTF-8 text file: its first N blocks of --block-size tokens (the original tokenizer,
  no special tokens) are the inputs, in one batch, plus a copy of the first block right-padded
  to test the padding mask.
- --float64 runs both models in double precision: what is left is the pruning's own error, not
  float32's rounding (a 30-layer model's float32 logits differ by ~1e-4 between two matmul
  shapes of the same sums).
Exits 1 when a difference exceeds 1e-4.
"""
import argparse
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from common import check_versions
from llama_head_mask import head_masked

torch.set_num_threads(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("run")
    ap.add_argument("text")
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--float64", action="store_true")
    a = ap.parse_args()
    check_versions()
    pruned_dir = os.path.join(a.run, "pruned_model")
    mask = torch.from_numpy(np.load(os.path.join(a.run, "head_mask.npy"))).float()
    tok = AutoTokenizer.from_pretrained(a.original)
    ids = tok(open(a.text, encoding="utf-8").read()[:200_000], add_special_tokens=False)["input_ids"]
    n = a.block_size
    blocks = [ids[i * n:(i + 1) * n] for i in range(a.blocks)]
    assert all(len(b) == n for b in blocks), "the text is too short for that many blocks"
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    short = blocks[0][: n // 2] + [pad] * (n - n // 2)
    input_ids = torch.tensor(blocks + [short])
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, n // 2:] = 0
    import json
    config = json.load(open(os.path.join(pruned_dir, "config.json")))
    auto = AutoModelForSequenceClassification if config["architectures"][0].endswith(
        "ForSequenceClassification") else AutoModelForCausalLM
    original = auto.from_pretrained(a.original, attn_implementation="eager").eval()
    pruned = auto.from_pretrained(pruned_dir, trust_remote_code=True).eval()
    if a.float64:
        original, pruned, mask = original.double(), pruned.double(), mask.double()
    with torch.no_grad():
        with head_masked(original, mask):
            want = original(input_ids=input_ids, attention_mask=attention_mask).logits
        got = pruned(input_ids=input_ids, attention_mask=attention_mask).logits
    # Padded positions of a causal model see only earlier tokens; compare every position the
    # attention mask keeps (classifiers return one row per example).
    if got.dim() == 3:
        keep = attention_mask.bool()
        diff = (got - want).abs()[keep].max().item()
    else:
        diff = (got - want).abs().max().item()
    params = (sum(p.numel() for p in original.parameters()), sum(p.numel() for p in pruned.parameters()))
    print(f"{type(pruned).__name__}: parameters {params[0]} -> {params[1]}, "
          f"max |logit diff| vs masked original {diff:.2e} over {input_ids.shape[0]} blocks of {n}"
          f" ({'float64' if a.float64 else 'float32'}; largest |logit| {want.abs().max().item():.1f})")
    if diff > 1e-4 or params[1] >= params[0]:
        sys.exit(1)


if __name__ == "__main__":
    main()
