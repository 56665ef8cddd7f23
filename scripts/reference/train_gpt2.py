"""Trains a small GPT-2 from scratch on MRPC train sentences (real English), with the tiny fixture's
byte-level BPE tokenizer (300 tokens), and writes held-out MRPC dev text as token-id blocks.

usage: train_gpt2.py OUT_DIR [--layers 4] [--heads 8] [--embd 128] [--steps 1500] [--block 64]
                     [--ids-out FILE --ids-block N --ids-lines N] [--text-out FILE]

OUT_DIR gets config.json, model.safetensors and the tokenizer files; --ids-out gets MRPC dev as blocks of
--ids-block ids (run_prune_gpt's np.loadtxt format), --text-out the same dev sentences as text.
Deterministic for a given torch version (seeded, 2 threads).
"""
import argparse
import os
import shutil

import numpy as np
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

from common import FIXTURES, read_mrpc


def stream(tok, sentences):
    ids = []
    for s in sentences:
        ids.extend(tok(s)["input_ids"] + [tok.eos_token_id])
    return torch.tensor(ids)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--embd", type=int, default=128)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--ids-out")
    ap.add_argument("--ids-block", type=int, default=64)
    ap.add_argument("--ids-lines", type=int, default=0)
    ap.add_argument("--text-out")
    ap.add_argument("--no-tokenizer", action="store_true", help="token-id fixtures need none")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    tiny = os.path.join(FIXTURES, "tiny-gpt2")
    tok = GPT2TokenizerFast.from_pretrained(tiny)
    train = stream(tok, [s for r in read_mrpc("train") for s in r[:2]])
    config = GPT2Config(vocab_size=len(tok), n_positions=max(a.block, a.ids_block), n_embd=a.embd, n_layer=a.layers,
                        n_head=a.heads, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(0)
    model.train()
    for step in range(a.steps):
        starts = torch.randint(0, len(train) - a.block, (a.batch,), generator=g)
        x = torch.stack([train[s:s + a.block] for s in starts])
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == a.steps - 1:
            print(f"step {step}: loss {loss.item():.3f}", flush=True)
    model.eval()
    model.save_pretrained(a.out_dir, safe_serialization=True)
    if not a.no_tokenizer:
        tok.save_pretrained(a.out_dir)
    dev_sentences = [s for r in read_mrpc("dev") for s in r[:2]]
    if a.ids_out:
        dev = stream(tok, dev_sentences)
        n = len(dev) // a.ids_block
        blocks = dev[: n * a.ids_block].view(n, a.ids_block)
        if a.ids_lines:
            blocks = blocks[: a.ids_lines]
        np.savetxt(a.ids_out, blocks.numpy(), fmt="%d")
        with torch.no_grad():
            print(f"held-out loss {model(blocks, labels=blocks).loss.item():.4f} on {len(blocks)} blocks")
    if a.text_out:
        with open(a.text_out, "w") as f:
            f.write("\n".join(dev_sentences) + "\n")
