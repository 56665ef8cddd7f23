"""The reference for SmolLM2-135M-Instruct on WikiText-2: transformers 4.57.x reading the GGUF file
that scripts/setup.sh installs (models/SmolLM2-135M-Instruct.Q4_1.gguf, dequantised to float32 by
transformers' own loader), eager attention, the head mask as o_proj pre-hooks (llama_head_mask.py).

Writes tests/fixtures/smollm2_wikitext2.json (small: no weights, no text), which tests/it/llama.rs
compares bertology with:
- the inputs: WikiText-2 valid.txt tokenised whole without special tokens (the file's
  add_bos_token is false; bertology's --text FILE reads it so) and cut into blocks of 128, the
  first BLOCKS of them; stored as a hash of the ids (FNV-1a over little-endian u32s) and the first
  16 ids, so a tokenizer difference shows as such;
- loss: the mean token loss over the blocks (ForCausalLMLoss), and each block's mean;
- logits of block 0 at positions 0, 1, 63 and 127: the first 64 vocabulary entries, the
  logsumexp over the whole vocabulary and the argmax; the same 64 entries in double precision
  and transformers' own float32 error against them (float32_error);
- head importance, per-example estimator (bertology's default): mean over blocks of
  |d(block's mean token loss)/d(mask)|, raw [30, 9] and normalised as bertology and
  run_bertology.py do (each layer by its L2 norm + 1e-20, then min-max over all heads);
- the loss with a fixed head mask (every head h of layer l with (h + l) % 4 == 0 masked), as
  `eval --head-mask` must reproduce.

usage: make_smollm2_reference.py [--blocks N]
"""
import argparse
import json
import os
from contextlib import contextmanager

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from common import FIXTURES, ROOT, check_versions
from llama_head_mask import head_masked

torch.set_num_threads(2)
GGUF = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
TEXT = os.path.join(ROOT, "..", "shared", "data", "wikitext-2", "valid.txt")
BLOCK = 128


def fnv1a(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h ^= b
            h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@contextmanager
def exact_float64(model):
    """transformers run in float64 still rounds to float32 in three places: RMSNorm's statistics,
    the eager attention's softmax and the rotary angles. These patches keep float64 throughout
    (RMSNorm without the cast, sdpa attention, angles from float64 frequencies), so the result
    is the exact value that float32 runs approximate."""
    cfg = model.config
    norms = [m for m in model.modules() if type(m).__name__.endswith("RMSNorm")]

    def norm_forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    rope = model.model.rotary_emb
    assert getattr(cfg, "rope_scaling", None) is None, "default rotary embeddings only"
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv = 1.0 / cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)

    def rope_forward(self, x, position_ids):
        freqs = position_ids[:, :, None].double() * inv[None, None, :]
        emb = torch.cat((freqs, freqs), -1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    saved = (cfg._attn_implementation, [n.forward for n in norms], rope.forward)
    for n in norms:
        n.forward = norm_forward.__get__(n)
    rope.forward = rope_forward.__get__(rope)
    cfg._attn_implementation = "sdpa"
    try:
        yield
    finally:
        cfg._attn_implementation = saved[0]
        for n, f in zip(norms, saved[1]):
            n.forward = f
        rope.forward = saved[2]


def block_losses(logits, ids):
    """Each block's mean token loss (predicting token t+1 at position t)."""
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    return nll.mean(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=8)
    a = ap.parse_args()
    check_versions()
    folder, name = os.path.split(GGUF)
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    text = open(TEXT, encoding="utf-8").read()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    blocks = [ids[i * BLOCK:(i + 1) * BLOCK] for i in range(a.blocks)]
    x = torch.tensor(blocks)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, attn_implementation="eager",
                                                 dtype=torch.float32).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    cfg = model.config
    layers, heads = cfg.num_hidden_layers, cfg.num_attention_heads
    mask = torch.ones(a.blocks, layers, heads, requires_grad=True)
    with head_masked(model, mask):
        logits = model(input_ids=x).logits
    losses = block_losses(logits, x)
    (grad,) = torch.autograd.grad(losses.sum(), mask)
    raw = grad.abs().mean(0)
    norm = raw / (raw.pow(2).sum(-1, keepdim=True).sqrt() + 1e-20)
    norm = (norm - norm.min()) / (norm.max() - norm.min())
    ablation = torch.ones(layers, heads)
    for l in range(layers):
        for h in range(heads):
            if (h + l) % 4 == 0:
                ablation[l, h] = 0.0
    with torch.no_grad(), head_masked(model, ablation):
        masked_loss = block_losses(model(input_ids=x).logits, x).mean().item()
    positions = [0, 1, 63, 127]
    l0 = logits[0].detach()
    # The same block in double precision (the dequantised float32 weights, widened): what both
    # float32 implementations approximate, so each one's rounding error can be measured.
    model.double()
    with torch.no_grad(), exact_float64(model):
        l0_64 = model(input_ids=x[:1]).logits[0]
    model.float()
    out = {
        "gguf": os.path.basename(GGUF),
        "text": "wikitext-2/valid.txt",
        "block_size": BLOCK,
        "blocks": a.blocks,
        "ids_fnv1a": fnv1a([i for b in blocks for i in b]),
        "first_ids": blocks[0][:16],
        "loss": losses.mean().item(),
        "block_losses": losses.tolist(),
        "logits": {
            "positions": positions,
            "first_64": [l0[p, :64].tolist() for p in positions],
            "logsumexp": [torch.logsumexp(l0[p], -1).item() for p in positions],
            "argmax": [int(l0[p].argmax()) for p in positions],
            "float64_first_64": [l0_64[p, :64].tolist() for p in positions],
            "float32_error": max((l0[p, :64].double() - l0_64[p, :64]).abs().max().item()
                                 for p in positions),
        },
        "importance_raw": raw.tolist(),
        "importance": norm.tolist(),
        "ablation_rule": "(h + l) % 4 == 0 masked",
        "ablation_loss": masked_loss,
        "transformers": __import__("transformers").__version__,
    }
    path = os.path.join(FIXTURES, "smollm2_wikitext2.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}: loss {out['loss']:.6f}, masked loss {masked_loss:.6f}")


if __name__ == "__main__":
    main()
