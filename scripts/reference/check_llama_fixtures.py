"""Re-derives the Llama-style fixtures of make_llama_fixtures.py without transformers: a plain-torch
forward that reads only each folder's config.json and model.safetensors and follows LLAMA_NOTES.md
(rope variants, GQA, sliding windows, the additive float32-min mask, RMSNorm, the o_proj head mask,
hidden-states convention, last-non-pad pooling). It compares logits, losses, attentions (times the
mask), hidden states, mask gradients and the rope tensors with <name>_parity.safetensors and exits
non-zero on a difference over 1e-5. An executable form of the notes for the Rust port.

Usage: check_llama_fixtures.py [name ...]   (default: all six fixtures)
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from common import FIXTURES

OUT = os.path.join(FIXTURES, "families")
NAMES = ["llama", "mistral", "qwen2", "llama-cls", "llama-linear", "llama-dynamic"]
TOL = 1e-5


def rope(cfg, d, seq_len):
    theta = cfg.get("rope_theta", 10000.0)
    sc = cfg.get("rope_scaling") or {}
    kind = sc.get("rope_type", sc.get("type", "default"))
    exps = torch.arange(0, d, 2, dtype=torch.int64).float() / d
    if kind == "dynamic" and seq_len > cfg["max_position_embeddings"]:
        f, m = sc["factor"], cfg["max_position_embeddings"]
        theta = torch.tensor(theta) * (torch.tensor(f * seq_len) / m - (f - 1)) ** (d / (d - 2))  # float32
    inv = 1.0 / (theta ** exps)
    if kind == "linear":
        inv = inv / sc["factor"]
    elif kind == "llama3":
        f, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
        old = sc["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old / lo, inv / f, inv)
        smooth = (old / wavelen - lo) / (hi - lo)
        smoothed = (1 - smooth) * scaled / f + smooth * scaled
        medium = ~(wavelen < old / hi) & ~(wavelen > old / lo)
        inv = torch.where(medium, smoothed, scaled)
    elif kind not in ("default", "dynamic"):
        raise SystemExit(f"rope type {kind} not covered")
    pos = torch.arange(seq_len).float()
    emb = torch.cat([pos[:, None] * inv[None, :]] * 2, dim=-1)  # [T, d]
    return inv, emb.cos(), emb.sin()  # attention_scaling is 1.0 for default/linear/dynamic/llama3


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def windows(cfg):
    n = cfg["num_hidden_layers"]
    if cfg["model_type"] == "qwen2":
        return [cfg["sliding_window"] if t == "sliding_attention" else None for t in cfg["layer_types"]]
    if cfg["model_type"] == "mistral":
        return [cfg.get("sliding_window")] * n
    return [None] * n


def forward(cfg, w, ids, am, head_mask=None):
    B, T = ids.shape
    H, KV, hid = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    d = cfg.get("head_dim") or hid // H
    eps = cfg["rms_norm_eps"]
    inv, cos, sin = rope(cfg, d, T)
    ii, jj = torch.arange(T)[:, None], torch.arange(T)[None, :]
    x = w["model.embed_tokens.weight"][ids]
    hidden, attns = [x], []
    lin = lambda x, p: F.linear(x, w[p + ".weight"], w.get(p + ".bias"))  # noqa: E731
    for layer, win in enumerate(windows(cfg)):
        p = f"model.layers.{layer}."
        h = rms(x, w[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj").view(B, T, H, d).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj").view(B, T, KV, d).transpose(1, 2)
        v = lin(h, p + "self_attn.v_proj").view(B, T, KV, d).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)  # head h -> KV h // r
        allowed = (jj <= ii)[None] & am.bool()[:, None, :]
        if win is not None:
            allowed &= (ii - jj < win)[None]
        bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)[:, None]
        a = torch.softmax(q @ k.transpose(2, 3) * d ** -0.5 + bias, dim=-1)
        ctx = (a @ v).transpose(1, 2)  # [B, T, H, d]
        if head_mask is not None:
            m = head_mask[layer] if head_mask.dim() == 2 else head_mask[:, layer]
            m = m.view(1, 1, H, 1) if m.dim() == 1 else m.view(B, 1, H, 1)
            ctx = ctx * m
            a = a * m.view(-1, H, 1, 1)
        attns.append(a)
        x = x + lin(ctx.reshape(B, T, H * d), p + "self_attn.o_proj")
        h = rms(x, w[p + "post_attention_layernorm.weight"], eps)
        x = x + lin(F.silu(lin(h, p + "mlp.gate_proj")) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        hidden.append(x)
    hidden[-1] = rms(x, w["model.norm.weight"], eps)  # the last entry is after the final norm
    return hidden, attns, (inv, cos, sin)


def check(name):
    folder = os.path.join(OUT, name)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    w = load_file(os.path.join(folder, "model.safetensors"))
    f = load_file(os.path.join(OUT, f"{name}_parity.safetensors"))
    ids, am, labels = f["input_ids"], f["attention_mask"], f["labels"]
    cls = cfg["architectures"][0].endswith("ForSequenceClassification")
    head = w["score.weight"] if cls else w.get("lm_head.weight", w["model.embed_tokens.weight"])
    worst = 0.0

    def close(key, ours):
        nonlocal worst
        diff = (ours.detach() - f[key]).abs().max().item()
        worst = max(worst, diff)
        if diff > TOL:
            raise SystemExit(f"{name}: {key} differs by {diff}")

    def logits_loss(hidden, per_example=False):
        logits = hidden[-1] @ head.T
        if cls:
            last = (torch.arange(ids.shape[1]) * (ids != cfg["pad_token_id"]).int()).argmax(-1)
            logits = logits[torch.arange(ids.shape[0]), last]
            return logits, F.cross_entropy(logits, labels, reduction="sum" if per_example else "mean")
        lg, lb = logits[:, :-1], labels[:, 1:]
        tok = F.cross_entropy(lg.transpose(1, 2), lb, ignore_index=-100, reduction="none")
        if per_example:
            return logits, (tok.sum(-1) / (lb != -100).sum(-1).clamp(min=1)).sum()
        return logits, tok.sum() / (lb != -100).sum()

    cases = [c for c in ("none", "2d", "3d") if f"{c}.logits" in f]
    for case in cases:
        hm = {"none": None, "2d": f.get("head_mask_2d"), "3d": f.get("head_mask_3d")}[case]
        hidden, attns, (inv, cos, sin) = forward(cfg, w, ids, am, hm)
        logits, loss = logits_loss(hidden)
        close(f"{case}.logits", logits)
        close(f"{case}.loss", loss.reshape(1))
        for i, a in enumerate(attns):
            close(f"{case}.attentions.{i}", a)
        for i, h in enumerate(hidden):
            close(f"{case}.hidden_states.{i}", h)
        if case == "none":
            close("rope.inv_freq", inv)
            close("rope.cos", cos)
            close("rope.sin", sin)
    if "grad_2d" in f:
        L, H = f["head_mask_2d"].shape
        xi = torch.ones(L, H, requires_grad=True)
        logits_loss(forward(cfg, w, ids, am, xi)[0])[1].backward()
        close("grad_2d", xi.grad)
        xi3 = torch.ones(ids.shape[0], L, H, requires_grad=True)
        logits_loss(forward(cfg, w, ids, am, xi3)[0], per_example=True)[1].backward()
        close("grad_3d", xi3.grad)
    print(f"{name}: {', '.join(cases)} match (max abs difference {worst:.2e})")


if __name__ == "__main__":
    torch.set_num_threads(2)
    for n in sys.argv[1:] or NAMES:
        check(n)
