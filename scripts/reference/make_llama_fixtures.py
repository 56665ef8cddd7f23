"""Writes the parity fixtures of the Llama-style decoders (round 3) into tests/fixtures/families/
(run by scripts/make-fixtures.sh after make_family_fixtures.py, which empties that folder, and
make_gpt_fixtures.py, whose tiny-gpt2 tokenizer it reuses), with transformers 4.57.x, float32,
eager attention. Facts the Rust port must match: LLAMA_NOTES.md; check_llama_fixtures.py re-derives
every tensor below without transformers.

Every model folder holds config.json, model.safetensors (save_pretrained, safe_serialization) and
tiny-gpt2's byte-level BPE tokenizer (make_gpt_fixtures.tiny_tokenizer, 300 tokens: <|endoftext|>
is id 0, the BOS and EOS) plus a `<pad>` special token at id 300 (tokenizer.json, vocab.json,
merges.txt, tokenizer_config.json, special_tokens_map.json, added_tokens.json; the causal LMs also
generation_config.json); vocab_size 301, bos_token_id 0, eos_token_id 0, pad_token_id 300.
Weights are re-drawn (seeded): matrices N(0, 0.25), biases N(0, 0.1), RMSNorm weights
1 + 0.2 N(0, 1), so attention is far from uniform (median top probability about 0.75) and every
parameter matters beyond a 1e-5 tolerance.

- llama/: LlamaForCausalLM, 2 layers, hidden 48, 6 query heads, 2 KV heads, head_dim 12 (explicit,
  not 48 / 6), intermediate 64, silu, mlp_bias true, attention_bias false, untied lm_head,
  rms_norm_eps 1e-6, max_position_embeddings 64, rope_theta 10000, rope_scaling llama3 (factor 8,
  low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 32: of the 6 inverse
  frequencies the first is kept, the second smoothed, the other four divided by 8).
- mistral/: MistralForCausalLM, 2 layers, hidden 36, 6 / 2 heads, head_dim null in config.json
  (so 36 / 6 = 6), intermediate 32, untied, rope_theta 1000, sliding_window 4 on every layer.
- qwen2/: Qwen2ForCausalLM, mistral's shapes (no head_dim field: 6), q/k/v biases,
  tie_word_embeddings true (model.safetensors has no lm_head.weight), rope_theta 1000,
  use_sliding_window true, sliding_window 4, max_window_layers 1: layer_types
  ["full_attention", "sliding_attention"] (written to config.json: layer i slides iff
  i >= max_window_layers).
- llama-cls/: LlamaForSequenceClassification, llama's shapes and rope, 3 labels, pad_token_id 300.
- llama-linear/, llama-dynamic/: small LlamaForCausalLM (2 layers, hidden 16, 2 query heads, 1 KV
  head, head_dim 8, intermediate 16, tied, rope_theta 10000) with rope_scaling
  {"type": "linear", "factor": 2.0} (max_position_embeddings 64), and
  {"type": "dynamic", "factor": 2.0} with max_position_embeddings 8 < 12 input tokens, so the
  dynamic NTK base is recomputed for seq_len 12.

- <name>_parity.safetensors for each folder name above (llama, mistral, qwen2, llama-cls,
  llama-linear, llama-dynamic), float32 unless said:
  - input_ids [3, 12] int64: three English sentences tokenised, cut to 12, 9 and 5 tokens, RIGHT
    padding with pad id 300; attention_mask [3, 12] int64 (1 real, 0 padding);
  - labels: causal LMs input_ids with -100 at padding [3, 12] int64; llama-cls [0, 2, 1] [3] int64;
  - head_mask_2d [2, 6]: ones but [0,1] = 0, [0,4] = 0.5, [1,3] = [1,4] = [1,5] = 0 (KV group 1
    of layer 1 wholly off); head_mask_3d [3, 2, 6]: seeded 0/1 per example (not in the rope
    variants' files);
  - for each case in none, 2d, 3d (the rope variants: none only):
    <case>.logits ([3, 12, 301]; llama-cls: the pooled [3, 3]), <case>.loss [1] (causal LMs:
    transformers' ForCausalLMLoss, the mean over the batch's counted next-token predictions;
    llama-cls: cross-entropy mean over the batch), <case>.attentions.<layer> [3, H, 12, 12] for
    layer 0..1 (H = 6; 2 in the rope variants), <case>.hidden_states.<i> [3, 12, hidden] for
    i in 0..2 (hidden 48 llama / llama-cls, 36 mistral / qwen2, 16 rope variants).
    Padded positions are included as computed (see LLAMA_NOTES.md: in sliding layers a padded
    query whose window is all padding attends uniformly to all 12 keys).
    The mask is the o_proj pre-hook of llama_head_mask.py ([layers, H] for 2d, per example
    [batch, layers, H] for 3d). transformers' returned attentions do not change under it (it acts
    after the attention): <case>.attentions.<layer> stores transformers' attention weights
    MULTIPLIED BY THE MASK per head (per example for 3d), as BERT's head_mask returns them.
    hidden_states follow transformers 4.57: entry 0 is the embedding output, entry i (1 <= i < L)
    the output of layer i-1, and the last entry (2 here) is the FINAL RMSNorm applied to the last
    layer's output (check_model_inputs replaces the raw last-layer output with last_hidden_state);
    the script asserts this.
  - grad_2d [2, 6] = d(<none>.loss)/d(mask), mask = ones [layers, H]; grad_3d [3, 2, 6] =
    d(sum over examples of each example's mean token loss)/d(mask), mask = ones [batch, layers, H]
    (make_gpt_fixtures.per_example_loss: shifted, padding ignored). llama-cls: grad_2d of the
    batch-mean cross-entropy, grad_3d of the sum over examples of each example's cross-entropy.
    Not in the rope variants' files.
  - rope.inv_freq [head_dim / 2] and rope.attention_scaling [1] as the rotary module used them in
    the forward (for dynamic: after its update to seq_len 12), rope.cos / rope.sin [12, head_dim]
    (position_ids 0..11, the same for every row);
  - llama-cls only: last_non_pad [3] int64, the token each example is scored at.
"""
import copy
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import (GPT2TokenizerFast, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification,
                          MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from common import FIXTURES, check_versions
from llama_head_mask import head_masked, masked_attentions
from make_gpt_fixtures import per_example_loss

OUT = os.path.join(FIXTURES, "families")
torch.manual_seed(0)
torch.set_num_threads(2)
L, H, KV = 2, 6, 2
V, BOS, EOS, PAD = 301, 0, 0, 300
LENGTHS = [12, 9, 5]
TEXTS = ["The company said on Tuesday that its quarterly profit rose sharply.",
         "Shares of the bank fell 3 percent in early trading.",
         "He declined to comment on the report."]
STD = 0.25


def tokenizer():
    """tiny-gpt2's tokenizer (written by make_gpt_fixtures.py) with a <pad> special token at 300."""
    tok = GPT2TokenizerFast.from_pretrained(os.path.join(FIXTURES, "tiny-gpt2"))
    tok.add_special_tokens({"pad_token": "<pad>"})
    assert (len(tok), tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (V, BOS, EOS, PAD)
    return tok


def inputs(tok):
    t = max(LENGTHS)
    ids = torch.full((len(TEXTS), t), PAD, dtype=torch.long)
    mask = torch.zeros(len(TEXTS), t, dtype=torch.long)
    for i, (text, n) in enumerate(zip(TEXTS, LENGTHS)):
        enc = tok(text)["input_ids"]
        assert len(enc) >= n and PAD not in enc
        ids[i, :n] = torch.tensor(enc[:n])
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    mask2d = torch.ones(L, H)
    mask2d[0, 1] = 0
    mask2d[0, 4] = 0.5
    mask2d[1, 3:] = 0
    g = torch.Generator().manual_seed(1)
    mask3d = (torch.rand(len(TEXTS), L, H, generator=g) > 0.4).float()
    return ids, mask, labels, mask2d, mask3d


def randomise(model, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif p.dim() == 2:
                p.normal_(0, STD)
            else:
                p.normal_(0, 0.1)
    return model.eval()


def common_config(**kw):
    return dict(vocab_size=V, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, num_hidden_layers=L,
                hidden_act="silu", rms_norm_eps=1e-6, attention_dropout=0.0, attn_implementation="eager", **kw)


def rope_capture(model):
    """Forward hook on the rotary module: what it used (inv_freq, attention_scaling, cos, sin)."""
    rot = model.model.rotary_emb
    seen = {}

    def hook(module, args, out):
        seen["rope.inv_freq"] = module.inv_freq.detach().clone()
        seen["rope.attention_scaling"] = torch.tensor([float(module.attention_scaling)])
        seen["rope.cos"] = out[0][0].detach().clone()
        seen["rope.sin"] = out[1][0].detach().clone()

    return seen, rot.register_forward_hook(hook)


def check_hidden_convention(model, ids, mask, hidden):
    """The last hidden state is the final RMSNorm of the last layer's output."""
    seen = {}
    h = model.model.layers[-1].register_forward_hook(lambda m, a, o: seen.__setitem__("last", o))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    h.remove()
    assert torch.allclose(hidden[-1], model.model.norm(seen["last"]), atol=1e-6)
    assert not torch.allclose(hidden[-1], seen["last"], atol=1e-2)


def check_mask_by_weights(model, ids, mask, mask2d, logits):
    """The o_proj hook with a [layers, H] mask equals scaling o_proj's columns of each head."""
    scaled = copy.deepcopy(model)
    for attn, m in zip([layer.self_attn for layer in scaled.model.layers], mask2d):
        with torch.no_grad():
            attn.o_proj.weight.mul_(m.repeat_interleave(attn.head_dim)[None, :])
    with torch.no_grad():
        ref = scaled(input_ids=ids, attention_mask=mask, use_cache=False).logits
    assert torch.allclose(ref, logits, atol=1e-5), (ref - logits).abs().max()


def reference(name, model, tok, cases=("none", "2d", "3d"), grads=True):
    folder = os.path.join(OUT, name)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    ids, mask, labels, mask2d, mask3d = inputs(tok)
    cls = isinstance(model, LlamaForSequenceClassification)
    if cls:
        labels = torch.tensor([0, 2, 1])
    tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if "2d" in cases:
        tensors.update({"head_mask_2d": mask2d, "head_mask_3d": mask3d})
    hm = {"none": None, "2d": mask2d, "3d": mask3d}
    for case in cases:
        seen, handle = rope_capture(model)
        with torch.no_grad(), head_masked(model, hm[case]):
            o = model(input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True,
                      output_hidden_states=True, use_cache=False)
        handle.remove()
        if case == "none":
            tensors.update(seen)
            check_hidden_convention(model, ids, mask, o.hidden_states)
        if case == "2d":
            check_mask_by_weights(model, ids, mask, mask2d, o.logits)
        assert len(o.attentions) == L and len(o.hidden_states) == L + 1
        tensors[f"{case}.logits"] = o.logits
        tensors[f"{case}.loss"] = o.loss.reshape(1)
        for i, a in enumerate(masked_attentions(o.attentions, hm[case])):
            tensors[f"{case}.attentions.{i}"] = a
        for i, h in enumerate(o.hidden_states):
            tensors[f"{case}.hidden_states.{i}"] = h
    if grads:
        xi = torch.ones(L, H, requires_grad=True)
        with head_masked(model, xi):
            model(input_ids=ids, attention_mask=mask, labels=labels, use_cache=False).loss.backward()
        tensors["grad_2d"] = xi.grad
        xi3 = torch.ones(ids.shape[0], L, H, requires_grad=True)
        with head_masked(model, xi3):
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        if cls:
            F.cross_entropy(logits, labels, reduction="sum").backward()
        else:
            per_example_loss(logits, labels, causal=True).backward()
        tensors["grad_3d"] = xi3.grad
        model.zero_grad(set_to_none=True)
    if cls:
        idx = torch.arange(ids.shape[1]) * (ids != model.config.pad_token_id).int()
        tensors["last_non_pad"] = idx.argmax(-1)
    save_file({k: v.detach().contiguous() for k, v in tensors.items()},
              os.path.join(OUT, f"{name}_parity.safetensors"))
    return tensors


def default_inv_freq(theta, dim):
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def main():
    check_versions()
    os.makedirs(OUT, exist_ok=True)
    tok = tokenizer()
    llama3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 32}
    llama_shape = dict(hidden_size=48, num_attention_heads=H, num_key_value_heads=KV, head_dim=12,
                       intermediate_size=64, max_position_embeddings=64, rope_theta=10000.0, rope_scaling=llama3,
                       mlp_bias=True, attention_bias=False)

    t = reference("llama", randomise(LlamaForCausalLM(LlamaConfig(
        **common_config(**llama_shape, tie_word_embeddings=False))), 1), tok)
    base = default_inv_freq(10000.0, 12)
    same = torch.isclose(t["rope.inv_freq"], base)
    assert same[0] and not same[1:].any(), "llama3 scaling should keep one frequency and change the others"
    assert torch.allclose(t["rope.inv_freq"][2:], base[2:] / 8)

    shape = dict(hidden_size=36, num_attention_heads=H, num_key_value_heads=KV, intermediate_size=32,
                 max_position_embeddings=64, rope_theta=1000.0)
    t = reference("mistral", randomise(MistralForCausalLM(MistralConfig(
        **common_config(**shape, sliding_window=4, tie_word_embeddings=False))), 2), tok)
    far = torch.ones(12, 12).tril(-4).bool()  # key j with i - j >= 4: outside the window
    real = t["attention_mask"].bool()[:, None, :, None]  # real queries (padded ones: see LLAMA_NOTES.md)
    for i in range(L):
        assert (t[f"none.attentions.{i}"].masked_fill(~real, 0)[..., far] == 0).all()
    # Padded queries whose whole window is padding get uniform attention over all 12 keys.
    assert torch.allclose(t["none.attentions.0"][2, :, 8:], torch.full((H, 4, 12), 1 / 12))

    t = reference("qwen2", randomise(Qwen2ForCausalLM(Qwen2Config(
        **common_config(**shape, use_sliding_window=True, sliding_window=4, max_window_layers=1,
                        tie_word_embeddings=True))), 3), tok)
    assert (t["none.attentions.1"].masked_fill(~real, 0)[..., far] == 0).all()
    assert (t["none.attentions.0"].masked_fill(~real, 0)[..., far] != 0).any()

    reference("llama-cls", randomise(LlamaForSequenceClassification(LlamaConfig(
        **common_config(**llama_shape, num_labels=3))), 4), tok)

    small = dict(hidden_size=16, num_attention_heads=2, num_key_value_heads=1, intermediate_size=16,
                 rope_theta=10000.0, tie_word_embeddings=True)
    t = reference("llama-linear", randomise(LlamaForCausalLM(LlamaConfig(**common_config(
        **small, max_position_embeddings=64, rope_scaling={"type": "linear", "factor": 2.0}))), 5), tok,
        cases=("none",), grads=False)
    assert torch.allclose(t["rope.inv_freq"], default_inv_freq(10000.0, 8) / 2)
    t = reference("llama-dynamic", randomise(LlamaForCausalLM(LlamaConfig(**common_config(
        **small, max_position_embeddings=8, rope_scaling={"type": "dynamic", "factor": 2.0}))), 6), tok,
        cases=("none",), grads=False)
    ntk = 10000.0 * (2.0 * 12 / 8 - 1.0) ** (8 / 6)
    assert torch.allclose(t["rope.inv_freq"], default_inv_freq(ntk, 8))


if __name__ == "__main__":
    main()
