"""A head mask for Llama-style decoders (Llama, Mistral, Qwen2, ...) in transformers 4.57.x, which
have no `head_mask` argument.

`apply_head_mask(model, mask)` registers a forward pre-hook on every layer's `self_attn.o_proj` that
multiplies its input [batch, seq, H*d], viewed as [batch, seq, H, d], by the mask of that layer over
the H query heads; it returns the hook handles (call `.remove()` on each, or use `head_masked`).
This is what BERT's `head_mask` does: scaling head h's attention probabilities by m scales its
context vector by m, and o_proj's input is the concatenation of the context vectors.

The mask may be
- a tensor [layers, H]: the same mask for every example;
- a tensor [batch, layers, H]: one mask per example;
- a list with one tensor per layer, [H_l] or [batch, H_l] (for models whose layers keep different
  numbers of query heads after pruning; H_l = o_proj.in_features // head_dim).
It may require grad: the hook is differentiable, so d(loss)/d(mask) is the usual importance score.

The attention weights transformers returns (output_attentions=True, eager) are NOT changed by the
hook (it acts after the attention); `masked_attentions` gives them multiplied by the mask per head,
which is what BERT's head_mask returns.
"""
from contextlib import contextmanager

import torch


def attention_modules(model):
    """The self-attention modules of the decoder layers, in layer order (anything with an o_proj
    Linear and a layer_idx: LlamaAttention, MistralAttention, Qwen2Attention, ...)."""
    mods = [m for m in model.modules() if hasattr(m, "o_proj") and hasattr(m, "layer_idx")]
    mods.sort(key=lambda m: m.layer_idx)
    assert [m.layer_idx for m in mods] == list(range(len(mods))), "one attention module per layer expected"
    return mods


def _layer_mask(mask, layer):
    """The mask of one layer: [H] or [batch, H]."""
    if isinstance(mask, (list, tuple)):
        return mask[layer]
    if mask.dim() == 2:
        return mask[layer]
    if mask.dim() == 3:
        return mask[:, layer]
    raise ValueError(f"head mask of shape {tuple(mask.shape)}: [layers, H] or [batch, layers, H] expected")


def apply_head_mask(model, mask):
    """Registers the o_proj pre-hooks; returns their handles."""
    handles = []
    for attn in attention_modules(model):
        m = _layer_mask(mask, attn.layer_idx)
        d = attn.head_dim
        heads = attn.o_proj.in_features // d
        if m.shape[-1] != heads:
            raise ValueError(f"layer {attn.layer_idx}: mask over {m.shape[-1]} heads, o_proj has {heads}")

        def hook(module, args, m=m, d=d, heads=heads):
            (x,) = args  # [batch, seq, H*d]
            b, t, _ = x.shape
            scale = m.to(x.dtype)
            scale = scale.view(1, 1, heads, 1) if scale.dim() == 1 else scale.view(b, 1, heads, 1)
            return ((x.view(b, t, heads, d) * scale).view(b, t, heads * d),)

        handles.append(attn.o_proj.register_forward_pre_hook(hook))
    return handles


@contextmanager
def head_masked(model, mask):
    """`with head_masked(model, mask): model(...)` — the hooks live for the block only."""
    handles = apply_head_mask(model, mask) if mask is not None else []
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def masked_attentions(attentions, mask):
    """transformers' attention weights (one [batch, H, q, k] per layer) multiplied by the head mask
    per head, as BERT's head_mask would return them; unchanged when mask is None."""
    if mask is None:
        return tuple(attentions)
    out = []
    for layer, a in enumerate(attentions):
        m = _layer_mask(mask, layer).to(a.dtype)
        m = m.view(1, -1, 1, 1) if m.dim() == 1 else m.view(m.shape[0], -1, 1, 1)
        out.append(a * m)
    return tuple(out)
