"""run_prune_gpt.py's algorithms (transformers' bertology research project, run on transformers 4.57.x)
as plain functions over a GPT2LMHeadModel, with its defects kept for replication:

- the "loss" is the SUM of the per-batch mean losses (it grows with the number of batches), and the
  score is 1 / that loss;
- tokens are counted with padding (every id of the batch);
- the entropy is of p^2, not p (entropy(attn, unlogit=True));
- the mask gradient is never zeroed between batches (importance adds |sum of gradients so far|);
- batches come in random order (RandomSampler); `order_seed=None` keeps the file order, which is what
  bertology's `--estimator anchor` reproduces.

usage: anchor_gpt.py MODEL_DIR TOKEN_IDS OUT_JSON [--batch-size 4] [--threshold 0.9] [--amount 0.1]
writes the unmasked importance (raw and normalised), entropy, score, the masking curve and final mask.
"""
import argparse
import json
import time

import numpy as np
import torch
from transformers import GPT2LMHeadModel


def entropy(p, unlogit=False):
    """run_prune_gpt's entropy: with unlogit it squares p first (the defect)."""
    exponent = 2
    if unlogit:
        p = torch.pow(p, exponent)
    plogp = p * torch.log(p)
    plogp[p == 0] = 0
    return -plogp.sum(dim=-1)


def loader(ids, batch_size, order_seed=None):
    order = np.arange(len(ids))
    if order_seed is not None:
        order = np.random.default_rng(order_seed).permutation(len(ids))
    for i in range(0, len(ids), batch_size):
        yield ids[order[i:i + batch_size]]


def compute_heads_importance(model, batches, compute_entropy=True, head_mask=None, layer_norm=True,
                             global_norm=True):
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    head_importance = torch.zeros(n_layers, n_heads)
    attn_entropy = torch.zeros(n_layers, n_heads)
    if head_mask is None:
        head_mask = torch.ones(n_layers, n_heads)
    head_mask.requires_grad_(requires_grad=True)
    tot_tokens, total_loss = 0.0, 0.0
    for input_ids in batches:
        outputs = model(input_ids, labels=input_ids, head_mask=head_mask, output_attentions=compute_entropy)
        loss = outputs.loss
        loss.backward()
        total_loss += loss.detach().cpu().numpy()
        if compute_entropy:
            for layer, attn in enumerate(outputs.attentions):
                attn_entropy[layer] += entropy(attn.detach(), True).sum(-1).sum(0).sum(0).detach()
        head_importance += head_mask.grad.abs().detach()
        tot_tokens += torch.ones_like(input_ids).float().detach().sum().data
    attn_entropy /= tot_tokens
    head_importance /= tot_tokens
    raw = head_importance.clone()
    if layer_norm:
        norm_by_layer = torch.pow(torch.pow(head_importance, 2).sum(-1), 1 / 2)
        head_importance /= norm_by_layer.unsqueeze(-1) + 1e-20
    if global_norm:
        head_importance = (head_importance - head_importance.min()) / (head_importance.max() - head_importance.min())
    return attn_entropy, head_importance, raw, float(total_loss)


def mask_heads(model, make_batches, masking_threshold=0.9, masking_amount=0.1):
    _, head_importance, _, loss = compute_heads_importance(model, make_batches(), compute_entropy=False)
    original_score = 1 / loss
    new_head_mask = torch.ones_like(head_importance)
    num_to_mask = max(1, int(new_head_mask.numel() * masking_amount))
    current_score = original_score
    head_mask = new_head_mask.clone()
    curve = [(int(new_head_mask.sum().item()), original_score)]
    while current_score >= original_score * masking_threshold:
        head_mask = new_head_mask.clone().detach()
        head_importance[head_mask == 0.0] = float("Inf")
        current_heads_to_mask = head_importance.view(-1).sort()[1]
        if len(current_heads_to_mask) <= num_to_mask:
            break
        current_heads_to_mask = current_heads_to_mask[:num_to_mask]
        new_head_mask = new_head_mask.detach().clone().view(-1)
        new_head_mask[current_heads_to_mask] = 0.0
        new_head_mask = new_head_mask.view_as(head_mask).clone().detach()
        _, head_importance, _, loss = compute_heads_importance(model, make_batches(), compute_entropy=False,
                                                               head_mask=new_head_mask)
        current_score = 1 / loss
        curve.append((int(new_head_mask.sum().item()), current_score))
        if new_head_mask.sum() == 0:
            # The anchor would loop forever here (nothing left to mask, the score unchanged):
            # stop, with the mask its next iteration would have kept if the score still passes.
            if current_score >= original_score * masking_threshold:
                head_mask = new_head_mask.clone().detach()
            break
    return head_mask, curve, original_score


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("token_ids")
    ap.add_argument("out_json")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--amount", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = GPT2LMHeadModel.from_pretrained(a.model_dir, attn_implementation="eager").eval()
    ids = torch.from_numpy(np.loadtxt(a.token_ids, dtype=np.int64, ndmin=2))
    start = time.time()
    ent, imp, raw, loss = compute_heads_importance(model, loader(ids, a.batch_size))
    mask, curve, original = mask_heads(model, lambda: loader(ids, a.batch_size), a.threshold, a.amount)
    seconds = time.time() - start
    with open(a.out_json, "w") as f:
        json.dump({"batch_size": a.batch_size, "threshold": a.threshold, "amount": a.amount,
                   "batches": (len(ids) + a.batch_size - 1) // a.batch_size, "loss": loss,
                   "importance": imp.tolist(), "raw_importance": raw.tolist(), "entropy_p2": ent.tolist(),
                   "original_score": original, "curve": curve, "final_mask": mask.int().tolist(),
                   "seconds": seconds}, f, indent=1)
    print(f"curve {curve}; {seconds:.1f} s")
