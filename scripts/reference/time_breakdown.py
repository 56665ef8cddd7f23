"""Where an eval or importance pass of SmolLM2-135M goes, op by op (scripts/bench-llm.sh).

Times, with torch on 2 threads (the same CPU kernels libtorch runs for bertology), each part of
one batch's pass at the bench's shapes — 8 blocks of 128 tokens, 30 layers of hidden 576,
9 query heads over 3 key/value heads of 64, SwiGLU 1536, a 49,152-way LM head — without
gradient (eval) and with the backward to the inputs only (importance: frozen weights), and
scales them to the bench's 16 blocks. Random weights: the time of a matmul does not depend on
its values. Prints a table and one JSON line.

usage: .venv-ref/bin/python scripts/reference/time_breakdown.py [--repeats N]
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
B, T, D, H, KV, HD, I, V, L = 8, 128, 576, 9, 3, 64, 1536, 49152, 30
BATCHES = 2  # the bench's 16 blocks in batches of 8


def timed(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def parts():
    g = torch.Generator().manual_seed(0)
    w = lambda *s: torch.randn(*s, generator=g) * 0.02
    wq, wk, wv, wo = w(H * HD, D), w(KV * HD, D), w(KV * HD, D), w(D, H * HD)
    wg, wu, wd = w(I, D), w(I, D), w(D, I)
    lm = w(V, D)
    ids = torch.randint(0, V, (B, T), generator=g)

    def block_matmuls(x):
        q, k, v = F.linear(x, wq), F.linear(x, wk), F.linear(x, wv)
        o = F.linear(q, wo)  # o_proj's input has q's shape
        h = F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)
        return o.sum() + h.sum() + k.sum() + v.sum()

    def attention(x):
        q = x[..., : H * HD].reshape(B, T, H, HD).transpose(1, 2)
        k = x[..., : KV * HD].reshape(B, T, KV, HD).transpose(1, 2).repeat_interleave(H // KV, 1)
        return F.scaled_dot_product_attention(q, k, k, is_causal=True).sum()

    def norms(x):  # two RMSNorms, the residual adds, rotary's multiply-adds
        r = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        r = r * torch.rsqrt(r.pow(2).mean(-1, keepdim=True) + 1e-5)
        return (r + x).sum() + (x * 0.5 + x.roll(1, -1) * 0.5).sum()

    def lm_head(x):
        return F.linear(x, lm).sum()

    def loss(x):
        logits = F.linear(x, lm)
        return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))

    return {
        "matmuls of the blocks (x30)": (block_matmuls, L),
        "attention (x30)": (attention, L),
        "norms, rotary, residuals (x30)": (norms, L),
        "LM head matmul": (lm_head, 1),
        "LM head + log-softmax loss": (loss, 1),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rows = {}
    for name, (fn, times) in parts().items():
        x = torch.randn(B, T, D)
        fwd = timed(lambda: fn(x), a.repeats)
        xg = x.clone().requires_grad_(True)
        both = timed(lambda: torch.autograd.grad(fn(xg), xg), a.repeats)
        rows[name] = {"eval_s": fwd * times * BATCHES, "importance_s": both * times * BATCHES}
    # The loss row includes the LM head matmul: report the softmax/loss alone.
    head, lossr = rows["LM head matmul"], rows.pop("LM head + log-softmax loss")
    rows["log-softmax loss over 49,152"] = {k: lossr[k] - head[k] for k in head}
    total = {k: sum(r[k] for r in rows.values()) for k in ("eval_s", "importance_s")}
    print(f"{'part (16 blocks of 128)':<34} {'eval s':>8} {'share':>6} {'importance s':>13} {'share':>6}")
    for name, r in rows.items():
        print(f"{name:<34} {r['eval_s']:8.2f} {100 * r['eval_s'] / total['eval_s']:5.0f}% "
              f"{r['importance_s']:13.2f} {100 * r['importance_s'] / total['importance_s']:5.0f}%")
    print(f"{'sum':<34} {total['eval_s']:8.2f}        {total['importance_s']:13.2f}")
    print(json.dumps({"torch": torch.__version__, "parts": rows, "total": total}))


if __name__ == "__main__":
    main()
