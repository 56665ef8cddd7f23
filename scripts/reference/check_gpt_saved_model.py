"""Loads a language model pruned by bertology (GPT-2, GPT, or BERT / RoBERTa with an MLM head) with
transformers 4.57.x and checks it.

usage: check_gpt_saved_model.py ORIGINAL_DIR PRUNE_RUN_DIR INPUTS [PREDICTIONS_CSV]
                                [--text] [--block-size N] [--seed N]

- PRUNE_RUN_DIR is the --output-dir of `bertology prune --task lm|mlm` (pruned_model/, head_mask.npy).
- INPUTS is a token-id file (run_prune_gpt's format), or with --text a UTF-8 text file that is cut
  into blocks as `bertology --text FILE --block-size N` cuts it (the model's tokenizer, its special
  tokens added, the remainder dropped).
- The pruned checkpoint's logits on INPUTS must equal, within 1e-4, the logits of the original
  checkpoint with head_mask.npy applied, both computed by transformers.
- PREDICTIONS_CSV (optional) is the predictions.csv of `bertology eval` with the same INPUTS on the
  pruned model: its per-line mean token losses must equal transformers' within 1e-4. For a masked
  LM the inputs are masked first exactly as bertology masks them (splitmix64 seeded by --seed and the
  line's index; 15 % of the non-special tokens, 80 % of those to the mask token, 10 % to a random
  id), so the losses compare the logits at every masked position.
Exits 1 when a difference exceeds 1e-4.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from common import check_versions

torch.set_num_threads(2)
M64 = (1 << 64) - 1


class SplitMix:
    """bertology's splitmix64 (src/data/lm.rs)."""

    def __init__(self, state):
        self.state = state & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) / float(1 << 53)


def special_tokens(model_dir):
    """The mask id and the never-masked ids, as bertology reads them (tokenizer.json's special
    added tokens, else the bracketed tokens of vocab.txt)."""
    special, mask = [], None
    path = os.path.join(model_dir, "tokenizer.json")
    if os.path.isfile(path):
        for t in json.load(open(path, encoding="utf-8"))["added_tokens"]:
            if t.get("special"):
                special.append(t["id"])
                if t["content"] in ("[MASK]", "<mask>"):
                    mask = t["id"]
    else:
        for i, tok in enumerate(open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8").read().splitlines()):
            if tok in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
                special.append(i)
                if tok == "[MASK]":
                    mask = i
    return mask, set(special)


def mask_like_bertology(ids, model_dir, vocab_size, seed, probability=0.15):
    """(masked inputs, labels with -100 where nothing is predicted), per line as bertology masks."""
    mask_id, special = special_tokens(model_dir)
    inputs, labels = ids.clone(), torch.full_like(ids, -100)
    for i in range(ids.shape[0]):
        rng = SplitMix(seed ^ ((i * 0xD1B54A32D192ED03) & M64))
        for j in range(ids.shape[1]):
            tok = int(ids[i, j])
            if tok in special or rng.uniform() >= probability:
                continue
            labels[i, j] = tok
            r = rng.uniform()
            if r < 0.8:
                inputs[i, j] = mask_id
            elif r < 0.9:
                inputs[i, j] = rng.next() % vocab_size
    return inputs, labels


def text_blocks(model_dir, path, block_size):
    """bertology's blocks of one text file: the whole file tokenised (special tokens added), cut
    into blocks of block_size, the remainder dropped."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    stream = tok(open(path, encoding="utf-8").read())["input_ids"]
    n = len(stream) // block_size
    return torch.tensor(stream[: n * block_size]).view(n, block_size)


def line_losses(logits, labels):
    """Mean token loss per line over the labelled positions (0 for a line with none)."""
    tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    counted = (labels != -100).sum(-1)
    return tok.sum(-1) / counted.clamp(min=1), counted


if __name__ == "__main__":
    check_versions()
    ap = argparse.ArgumentParser()
    ap.add_argument("original_dir")
    ap.add_argument("run_dir")
    ap.add_argument("inputs")
    ap.add_argument("predictions", nargs="?")
    ap.add_argument("--text", action="store_true", help="INPUTS is a text file, not token ids")
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=42, help="bertology's --seed (masked LM)")
    a = ap.parse_args()
    masked = any(x.endswith("MaskedLM") for x in AutoConfig.from_pretrained(a.original_dir).architectures or [])
    auto = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    original = auto.from_pretrained(a.original_dir, attn_implementation="eager").eval()
    pruned_dir = f"{a.run_dir}/pruned_model"
    pruned = auto.from_pretrained(pruned_dir, attn_implementation="eager").eval()
    if a.text:
        ids = text_blocks(pruned_dir, a.inputs, a.block_size)
    else:
        ids = torch.tensor(np.loadtxt(a.inputs, dtype=np.int64, ndmin=2))
    heads = [m.num_heads if hasattr(m, "num_heads") else getattr(m, "n_head", None) or m.num_attention_heads
             for name, m in pruned.named_modules() if name.endswith((".attn", ".attention.self"))]
    print(f"transformers loaded {pruned_dir} ({type(pruned).__name__}): heads per layer {heads}, "
          f"pruned_heads {pruned.config.pruned_heads}")
    mask = torch.tensor(np.load(f"{a.run_dir}/head_mask.npy")).float()
    with torch.no_grad():
        theirs = pruned(input_ids=ids)
        reference = original(input_ids=ids, head_mask=mask)
    diff = (theirs.logits - reference.logits).abs().max().item()
    ok = diff <= 1e-4
    print(f"{ids.shape[0]} sequences x {ids.shape[1]} tokens: max |logit diff| pruned vs original+head_mask {diff:.2e}")
    if a.predictions:
        with open(a.predictions) as f:
            rows = list(csv.DictReader(f))
        ours = torch.tensor([float(r["loss"]) for r in rows])
        our_tokens = torch.tensor([int(float(r["tokens"])) for r in rows])
        if len(rows) != ids.shape[0]:
            sys.exit(f"{a.predictions}: {len(rows)} lines, but INPUTS make {ids.shape[0]}")
        if masked:
            inputs, labels = mask_like_bertology(ids, pruned_dir, pruned.config.vocab_size, a.seed)
            with torch.no_grad():
                logits = pruned(input_ids=inputs).logits
        else:
            logits, labels = theirs.logits[:, :-1], ids[:, 1:]
        per_line, counted = line_losses(logits, labels)
        same_tokens = bool((counted == our_tokens).all())
        d = (per_line - ours).abs().max().item()
        ok = ok and d <= 1e-4 and same_tokens
        what = "masked tokens" if masked else "predicted tokens"
        print(f"bertology eval on the pruned model: {int(counted.sum())} {what} "
              f"({'the same' if same_tokens else 'NOT the same'} count per line); "
              f"max |per-line loss diff| vs transformers {d:.2e}")
    sys.exit(0 if ok else 1)
