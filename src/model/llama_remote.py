"""Llama, Mistral and Qwen2 models pruned by bertology, for transformers (4.57).

transformers cannot express per-layer head counts for these models, so bertology saves this
file beside a pruned model's weights and names its classes in config.json's `auto_map`:

    AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)

The classes are transformers' own, with each layer's q/k/v/o projections cut to the heads
that `pruned_heads` (layer -> original query heads removed) leaves, and its MLP
(gate/up/down_proj) to the neurons that `pruned_neurons` (layer -> original intermediate
neurons removed) leaves (`_cut_mlps`, from mlp_remote.py, which bertology appends to this file). Query head h reads
key/value head h // (num_attention_heads // num_key_value_heads) of the original layout; a
key/value head stays while any query head of its group does, so a layer keeps an explicit
map from its query heads to its key/value heads (groups may be uneven).
"""
import types

import torch
from torch import nn
from transformers.models.llama import modeling_llama
from transformers.models.mistral import modeling_mistral
from transformers.models.qwen2 import modeling_qwen2


def kept_heads(config):
    """Per layer: (kept query heads, kept key/value heads, each query head's key/value row)."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    group = heads // kv_heads
    pruned = {int(k): set(v) for k, v in (getattr(config, "pruned_heads", None) or {}).items()}
    layers = []
    for layer in range(config.num_hidden_layers):
        query = [h for h in range(heads) if h not in pruned.get(layer, set())]
        kv = sorted({h // group for h in query})
        layers.append((query, kv, [kv.index(h // group) for h in query]))
    return layers


def _attention_forward(self, hidden_states, position_embeddings, attention_mask=None,
                       past_key_values=None, cache_position=None, **kwargs):
    """transformers' eager attention with the layer's explicit query -> key/value map."""
    b, t, _ = hidden_states.shape
    d = self.head_dim
    q = self.q_proj(hidden_states).view(b, t, -1, d).transpose(1, 2)
    k = self.k_proj(hidden_states).view(b, t, -1, d).transpose(1, 2)
    v = self.v_proj(hidden_states).view(b, t, -1, d).transpose(1, 2)
    cos, sin = position_embeddings
    q, k = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
    if past_key_values is not None:
        k, v = past_key_values.update(k, v, self.layer_idx,
                                      {"sin": sin, "cos": cos, "cache_position": cache_position})
    kv_of = torch.tensor(self.kv_of, dtype=torch.long, device=k.device)
    k = k.index_select(1, kv_of)
    v = v.index_select(1, kv_of)
    scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling
    keys = k.shape[-2]
    if attention_mask is None:
        # No mask given (sdpa's pure causal case): causal over the cached keys.
        allowed = torch.ones(t, keys, dtype=torch.bool, device=q.device).tril(keys - t)
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attention_mask[:, :, :, :keys], torch.finfo(scores.dtype).min)
    else:
        scores = scores + attention_mask[:, :, :, :keys]
    probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
    probs = nn.functional.dropout(probs, p=self.attention_dropout if self.training else 0.0,
                                  training=self.training)
    out = torch.matmul(probs, v).transpose(1, 2).reshape(b, t, -1).contiguous()
    return self.o_proj(out), probs


def _resized(linear, out_features=None, in_features=None):
    return nn.Linear(in_features if in_features is not None else linear.in_features,
                     out_features if out_features is not None else linear.out_features,
                     bias=linear.bias is not None, dtype=linear.weight.dtype,
                     device=linear.weight.device)


def _cut_heads(model, config):
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    for layer, (query, kv, kv_of) in zip(model.model.layers, kept_heads(config)):
        attn = layer.self_attn
        attn.q_proj = _resized(attn.q_proj, out_features=len(query) * head_dim)
        attn.k_proj = _resized(attn.k_proj, out_features=len(kv) * head_dim)
        attn.v_proj = _resized(attn.v_proj, out_features=len(kv) * head_dim)
        attn.o_proj = _resized(attn.o_proj, in_features=len(query) * head_dim)
        # A plain list: a buffer made while transformers builds the model on the meta device
        # would never receive values.
        attn.kv_of = kv_of
        attn.forward = types.MethodType(_attention_forward, attn)


def _pruned(base):
    class Pruned(base):
        def __init__(self, config):
            # transformers' post_init would hand pruned_heads to LlamaModel._prune_heads, which
            # does not exist: the heads are cut here instead.
            pruned = config.pruned_heads
            config.pruned_heads = {}
            try:
                super().__init__(config)
            finally:
                config.pruned_heads = pruned
            _cut_heads(self, config)
            _cut_mlps(self, config)  # noqa: F821 (appended from mlp_remote.py)

        def prune_heads(self, heads_to_prune):
            # The shapes come from pruned_heads in __init__; there is nothing left to cut.
            pass

        def _init_weights(self, module):
            if isinstance(module, nn.Linear) and module.weight.device.type != "meta" \
                    and module.weight.numel() == 0:
                return
            super()._init_weights(module)

    Pruned.__name__ = Pruned.__qualname__ = "Bertology" + base.__name__
    return Pruned


BertologyLlamaForCausalLM = _pruned(modeling_llama.LlamaForCausalLM)
BertologyLlamaForSequenceClassification = _pruned(modeling_llama.LlamaForSequenceClassification)
BertologyMistralForCausalLM = _pruned(modeling_mistral.MistralForCausalLM)
BertologyMistralForSequenceClassification = _pruned(modeling_mistral.MistralForSequenceClassification)
BertologyQwen2ForCausalLM = _pruned(modeling_qwen2.Qwen2ForCausalLM)
BertologyQwen2ForSequenceClassification = _pruned(modeling_qwen2.Qwen2ForSequenceClassification)
