"""The reference side of scripts/bench-llm.sh: transformers 4.57.x on SmolLM2-135M-Instruct (the
GGUF scripts/setup.sh installs, dequantised to float32 by transformers' loader), sdpa attention,
the head mask as forward pre-hooks on o_proj (llama_head_mask.py), frozen weights, 2 threads.

The inputs are bertology's `--task lm --text FILE --block-size B --data-subset N`: the file
tokenised whole without special tokens, cut into blocks of B tokens, the first N of them, in
batches of --batch-size.

  bench_llm.py eval        one timed pass without gradient (after a warm-up pass)
  bench_llm.py importance  one timed importance pass: per-example mask [batch, layers, heads],
                           d(sum of the blocks' mean token losses)/d(mask), |.| summed (after a
                           warm-up pass)
  bench_llm.py prune       --steps K importance passes, each under the mask of the last with
                           --amount of the heads more masked (least important first), as
                           bertology's masking loop re-estimates; timed as a whole (no warm-up)

Prints one JSON line: the mode, the pass's seconds, tokens per second, the loss. Loading the
model is not timed (bertology's figures are whole processes, loading included).
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from common import ROOT, check_versions
from llama_head_mask import head_masked

torch.set_num_threads(2)


def blocks_of(tok, path, block, n):
    ids = tok(open(path, encoding="utf-8").read(), add_special_tokens=False)["input_ids"]
    blocks = [ids[i * block:(i + 1) * block] for i in range(len(ids) // block)][:n]
    assert len(blocks) == n, f"{path}: only {len(blocks)} blocks of {block}"
    return torch.tensor(blocks)


def block_losses(logits, ids):
    """Each block's mean token loss (predicting token t+1 at position t)."""
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    return -logp.gather(-1, ids[:, 1:, None]).squeeze(-1).mean(-1)


def eval_pass(model, x, batch, mask):
    total = 0.0
    with torch.no_grad(), head_masked(model, mask):
        for i in range(0, len(x), batch):
            b = x[i:i + batch]
            total += block_losses(model(input_ids=b).logits, b).sum().item()
    return total / len(x)


def importance_pass(model, x, batch, mask):
    layers, heads = mask.shape
    importance = torch.zeros(layers, heads)
    total = 0.0
    for i in range(0, len(x), batch):
        b = x[i:i + batch]
        m = mask.expand(len(b), layers, heads).clone().requires_grad_(True)
        with head_masked(model, m):
            losses = block_losses(model(input_ids=b).logits, b)
        (g,) = torch.autograd.grad(losses.sum(), m)
        importance += g.abs().sum(0)
        total += losses.sum().item()
    return importance / len(x), total / len(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["eval", "importance", "prune"])
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--text", default=os.path.join(ROOT, "data", "wikitext-2", "valid.txt"))
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--blocks", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--amount", type=float, default=0.1)
    a = ap.parse_args()
    check_versions()
    folder, name = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    x = blocks_of(tok, a.text, a.block_size, a.blocks)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, attn_implementation="sdpa",
                                                 dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = model.config
    mask = torch.ones(cfg.num_hidden_layers, cfg.num_attention_heads)
    out = {"mode": a.mode, "blocks": a.blocks, "block_size": a.block_size, "batch_size": a.batch_size,
           "transformers": __import__("transformers").__version__, "torch": torch.__version__}
    if a.mode == "eval":
        eval_pass(model, x, a.batch_size, mask)
        start = time.perf_counter()
        out["loss"] = eval_pass(model, x, a.batch_size, mask)
    elif a.mode == "importance":
        importance_pass(model, x, a.batch_size, mask)
        start = time.perf_counter()
        _, out["loss"] = importance_pass(model, x, a.batch_size, mask)
    else:
        start = time.perf_counter()
        per_step = max(1, int(mask.numel() * a.amount))
        for _ in range(a.steps + 1):
            imp, out["loss"] = importance_pass(model, x, a.batch_size, mask)
            live = imp.masked_fill(mask == 0, float("inf")).flatten()
            mask = mask.flatten()
            mask[live.argsort()[:per_step]] = 0.0
            mask = mask.view(cfg.num_hidden_layers, cfg.num_attention_heads)
        out["steps"] = a.steps
    out["seconds"] = time.perf_counter() - start
    out["tokens_per_second"] = a.blocks * a.block_size * (1 if a.mode != "prune" else a.steps + 1) / out["seconds"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
