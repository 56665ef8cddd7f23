"""The Python side of scripts/bench.sh: run_bertology.py's algorithms and transformers baselines
on the fine-tuned MiniLM and MRPC dev, timed. Prints one JSON object.

usage: bench_anchor.py MODEL_DIR {eval,importance,prune,finetune-steps} [options]
"""
import argparse
import json
import statistics
import time

import torch
from transformers import AutoTokenizer, BertForSequenceClassification

import anchor
from common import check_versions, read_mrpc

torch.set_num_threads(2)


def load(model_dir, train=False):
    model = BertForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    model.train(train)
    return model


def median_time(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_eval(a, model, tok, rows):
    loader = list(anchor.batches(tok, rows, a.batch_size, pad_to_max=a.pad == "max"))

    def run():
        with torch.no_grad():
            for b in loader:
                model(**{k: v for k, v in b.items() if k != "labels"})

    s = median_time(run, a.runs)
    return {"seconds": s, "examples_per_second": len(rows) / s}


def bench_importance(a, model, tok, rows):
    for p in model.parameters():
        p.requires_grad_(False)
    loader = list(anchor.batches(tok, rows, a.batch_size, pad_to_max=a.pad == "max"))
    if a.mode == "anchor":
        run = lambda: anchor.compute_heads_importance(model, loader)
    else:
        run = lambda: per_example_batched(model, loader)
    s = median_time(run, a.runs, warmup=0)
    return {"seconds": s}


def per_example_batched(model, loader):
    """A batched per-example estimator in Python: mask [layers, batch, heads, 1, 1], summed loss."""
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    total = torch.zeros(L, H)
    for b in loader:
        n = b["input_ids"].shape[0]
        xi = torch.ones(L, n, H, 1, 1, requires_grad=True)
        out = model(**{k: v for k, v in b.items() if k != "labels"}, head_mask=xi)
        loss = torch.nn.functional.cross_entropy(out.logits, b["labels"], reduction="sum")
        (g,) = torch.autograd.grad(loss, xi)
        total += g.abs().sum(dim=(1, 3, 4))
    return total


def bench_prune(a, model, tok, rows):
    """run_bertology.py main with --try_masking: importance with entropy, mask_heads, prune_heads."""
    for p in model.parameters():
        p.requires_grad_(False)
    loader = list(anchor.batches(tok, rows, a.batch_size, pad_to_max=True))
    t0 = time.perf_counter()
    anchor.compute_heads_importance(model, loader)
    t1 = time.perf_counter()
    mask, curve, original = anchor.mask_heads(model, loader)
    t2 = time.perf_counter()
    # prune_heads: a timed masked pass (with backward, as the anchor does), prune, a timed pass.
    _, _, _, preds, labels = anchor.compute_heads_importance(model, loader, compute_entropy=False, head_mask=mask.clone())
    score_masked = anchor.accuracy(preds, labels)
    t3 = time.perf_counter()
    to_prune = {l: (mask[l] == 0).nonzero().view(-1).tolist() for l in range(mask.shape[0])}
    to_prune = {l: h for l, h in to_prune.items() if h}
    before = sum(p.numel() for p in model.parameters())
    model.prune_heads(to_prune)
    after = sum(p.numel() for p in model.parameters())
    runnable = all(len(h) < model.config.num_attention_heads for h in to_prune.values())
    if runnable:  # transformers cannot run a layer without heads
        _, _, _, preds, labels = anchor.compute_heads_importance(
            model, loader, compute_entropy=False, actually_pruned=True)
    score_pruned = anchor.accuracy(preds, labels)
    t4 = time.perf_counter()
    return {"seconds": t4 - t0, "importance_seconds": t1 - t0, "masking_seconds": t2 - t1,
            "heads_kept": int(mask.sum().item()), "original_score": original, "masked_score": score_masked,
            "pruned_score": score_pruned, "curve": curve, "parameters_before": before, "parameters_after": after,
            "masked_pass_seconds": t3 - t2, "pruned_pass_seconds": t4 - t3, "final_mask": mask.int().tolist()}


def bench_finetune_steps(a, model, tok, rows):
    """Seconds per AdamW training step at batch 32 with dynamic padding (as transformers' Trainer)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.0)
    loader = list(anchor.batches(tok, rows, 32, pad_to_max=False))
    times = []
    for i, b in enumerate(loader[: a.steps + 2]):
        t = time.perf_counter()
        out = model(**b)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return {"seconds_per_step": statistics.median(times), "steps": len(times)}


if __name__ == "__main__":
    check_versions()
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("what", choices=["eval", "importance", "prune", "finetune-steps"])
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--pad", choices=["max", "longest"], default="max")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mode", choices=["anchor", "per-example"], default="anchor")
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model_dir)
    split = "train" if a.what == "finetune-steps" else "dev"
    rows = read_mrpc(split)
    model = load(a.model_dir)
    fn = {"eval": bench_eval, "importance": bench_importance, "prune": bench_prune,
          "finetune-steps": bench_finetune_steps}[a.what]
    print(json.dumps(fn(a, model, tok, rows)))
