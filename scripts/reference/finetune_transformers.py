"""Fine-tune a model on MRPC with transformers 4.57 the way its Trainer does, for comparison with
`bertology finetune` at the same hyperparameters (issue: fine-tuning acceptance 1).

A plain loop instead of Trainer (which needs accelerate): the same optimiser (torch AdamW, no
decay on biases and LayerNorm weights), linear warm-up and decay, gradient clipping, shuffled
batches with dynamic padding, dev evaluation after every epoch.

usage: finetune_transformers.py [--model DIR] [--epochs 5] [--lr 1e-4] [--weight-decay 0.01]
                                [--batch-size 32] [--warmup-ratio 0.1] [--seed 42] [--threads 2]
Prints one JSON object: settings, per-epoch loss and dev acc/F1, seconds.
"""
import argparse
import json
import math
import time

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

from common import MINILM, check_versions, read_mrpc


def batches(tok, rows, order, batch_size):
    for i in range(0, len(order), batch_size):
        chunk = [rows[j] for j in order[i : i + batch_size]]
        enc = tok([r[0] for r in chunk], [r[1] for r in chunk], padding="longest", truncation=True,
                  max_length=128, return_tensors="pt")
        enc["labels"] = torch.tensor([r[2] for r in chunk])
        yield enc


def evaluate(model, tok, rows):
    model.eval()
    preds = []
    with torch.no_grad():
        for b in batches(tok, rows, list(range(len(rows))), 32):
            b.pop("labels")
            preds += model(**b).logits.argmax(-1).tolist()
    labels = [r[2] for r in rows]
    tp = sum(p == 1 and y == 1 for p, y in zip(preds, labels))
    fp = sum(p == 1 and y == 0 for p, y in zip(preds, labels))
    fn = sum(p == 0 and y == 1 for p, y in zip(preds, labels))
    acc = sum(p == y for p, y in zip(preds, labels)) / len(labels)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return {"acc": acc, "f1": f1}


def main():
    check_versions()
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=MINILM)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=2)
    train, dev = read_mrpc("train"), read_mrpc("dev")

    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": a.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    steps_per_epoch = math.ceil(len(train) / a.batch_size)
    total = steps_per_epoch * a.epochs
    sched = get_linear_schedule_with_warmup(opt, math.ceil(a.warmup_ratio * total), total)
    gen = torch.Generator().manual_seed(a.seed)

    epochs, t0 = [], time.perf_counter()
    for epoch in range(1, a.epochs + 1):
        model.train()
        order = torch.randperm(len(train), generator=gen).tolist()
        losses, te = [], time.perf_counter()
        for b in batches(tok, train, order, a.batch_size):
            loss = model(**b).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            losses.append(loss.item())
        train_seconds = time.perf_counter() - te
        metrics = evaluate(model, tok, dev)
        epochs.append({"epoch": epoch, "train_loss": sum(losses) / len(losses), "metrics": metrics,
                       "seconds_per_step": train_seconds / len(losses)})
        print(json.dumps(epochs[-1]), file=__import__("sys").stderr, flush=True)
    print(json.dumps({"settings": vars(a), "steps": total, "epochs": epochs, "final": epochs[-1]["metrics"],
                      "best": max(epochs, key=lambda e: e["metrics"]["acc"]),
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
