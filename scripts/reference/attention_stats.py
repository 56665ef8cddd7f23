"""Reference for `bertology attention`: per-head attention statistics and the JS distances
between heads, from transformers' own attentions (eager, output_attentions) and numpy.

Each example runs alone (no padding), so padding cannot enter these numbers. Definitions, per
head, as means over query tokens of every example (token-weighted):
  first, separator, punctuation: weight on key 0 / on separator keys / on punctuation keys
  self: A[i, i]; previous: A[i, i-1] over queries i >= 1; next: A[i, i+1] over i <= n-2
  entropy: -sum_j A log A (nats); distance: sum_j A[i, j] |i - j|
  distances: mean over sampled queries of sqrt(JS divergence, natural log) between two heads'
  rows; queries floor(k n / Q) for k < Q (all when n <= Q).
Writes tests/fixtures/attention_stats_minilm.safetensors (first 64 MRPC dev pairs, MiniLM).
"""
import os
import string
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

from common import FIXTURES, MINILM, check_versions, read_mrpc

torch.set_num_threads(2)
NAMES = ["first", "separator", "punctuation", "self", "previous", "next", "entropy", "distance"]
EXTRA_PUNCT = set("¡¿«»‘’“”–—…·")
MAP_QUERIES = 16


def is_punctuation(token):
    t = token[2:] if token.startswith("##") else token
    t = t.lstrip("Ġ▁")
    return len(t) > 0 and all(c in string.punctuation or c in EXTRA_PUNCT for c in t)


def separator_ids(tok):
    enc = tok("a", "b", return_special_tokens_mask=True)
    return sorted({i for i, s in list(zip(enc["input_ids"], enc["special_tokens_mask"]))[1:] if s})


def xlogx(p):
    return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def sampled_queries(n, k):
    return list(range(n)) if k == 0 or k >= n else [i * n // k for i in range(k)]


def head_statistics(attn, sep, punct):
    """attn [heads, n, n] float64 of one example -> sums [8, heads] and counts [8]."""
    h, n, _ = attn.shape
    idx = np.arange(n)
    sums = np.zeros((8, h))
    sums[0] = attn[:, :, 0].sum(-1)
    sums[1] = attn[:, :, sep].sum((-1, -2))
    sums[2] = attn[:, :, punct].sum((-1, -2))
    sums[3] = attn[:, idx, idx].sum(-1)
    sums[4] = attn[:, idx[1:], idx[:-1]].sum(-1)
    sums[5] = attn[:, idx[:-1], idx[1:]].sum(-1)
    sums[6] = -xlogx(attn).sum(-1).sum(-1)
    dist = np.abs(idx[:, None] - idx[None, :])
    sums[7] = (attn * dist).sum(-1).sum(-1)
    counts = np.array([n, n, n, n, n - 1, n - 1, n, n], dtype=np.float64)
    return sums, counts


def js_distances(p):
    """p [heads, q, n]: sum over queries of sqrt(JSD(p_a, p_b)) for every pair [heads, heads]."""
    h = p.shape[0]
    ent = -xlogx(p).sum(-1)  # [h, q]
    out = np.zeros((h, h))
    for a in range(h):
        m = (p[a][None] + p) / 2
        jsd = -xlogx(m).sum(-1) - (ent[a][None] + ent) / 2
        out[a] = np.sqrt(np.clip(jsd, 0, None)).sum(-1)
    return out


def main():
    check_versions()
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(MINILM, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(MINILM)
    seps = separator_ids(tok)
    rows = read_mrpc("dev")[:64]
    L, H = model.config.num_hidden_layers, model.config.num_attention_heads
    sums = np.zeros((8, L, H))
    counts = np.zeros(8)
    dsum = np.zeros((L * H, L * H))
    queries = 0
    for a, b, _ in rows:
        enc = tok(a, b, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc, output_attentions=True)
        ids = enc["input_ids"][0].tolist()
        tokens = tok.convert_ids_to_tokens(ids)
        sep = np.array([i in seps for i in ids])
        punct = np.array([is_punctuation(t) for t in tokens])
        atts = [x[0].double().numpy() for x in out.attentions]
        for l, attn in enumerate(atts):
            s, c = head_statistics(attn, sep, punct)
            sums[:, l] += s
        counts += c
        q = sampled_queries(len(ids), MAP_QUERIES)
        p = np.concatenate([x[:, q, :] for x in atts], 0)
        dsum += js_distances(p)
        queries += len(q)
    stats = sums / counts[:, None, None]
    dist = dsum / queries
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, 0.0)
    path = os.path.join(FIXTURES, "attention_stats_minilm.safetensors")
    save_file({"statistics": stats.astype(np.float32), "distances": dist.astype(np.float32),
               "tokens": np.array([counts[0]], dtype=np.float32)}, path)
    for name, m in zip(NAMES, stats):
        print(f"{name:>12}: mean {m.mean():.4f} max {m.max():.4f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
