"""Small GGUF files and their references for tests/it/gguf.rs (gguf 0.19.0, transformers 4.57.x).

usage: make_gguf_fixtures.py   (writes tests/fixtures/gguf/)

- quants.gguf: one 2-D tensor per GGML type bertology dequantises (F32, F16, BF16, Q8_0, Q4_0,
  Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) with random data (quantised by gguf-py where it
  can; the K-quants, which gguf-py cannot quantise, as random raw blocks with sane f16 scales),
  alignment 64; quants_expected.safetensors: gguf.quants.dequantize of each tensor as read back
  by gguf.GGUFReader (the path transformers takes), float32, named like the tensors.
- tiny-llama.gguf: a 2-layer llama with grouped-query attention (4 query heads, 2 KV heads),
  untied LM head, mixed tensor types, q/k rows permuted as llama.cpp's converter permutes them,
  and a byte-level BPE tokenizer ("gpt2", add_bos_token false) trained on WikiText-2 valid;
  tiny-llama_expected.safetensors: the state dict transformers loads from it (float32), plus
  the logits on a few ids (`logits`, `input_ids`); tiny-llama_config.json: transformers' config.
- tiny-spm.gguf and tiny-qwen2.gguf: tokenizer metadata only (a SentencePiece-style "llama"
  vocabulary with scores and byte tokens; a qwen2 byte-level BPE).
- tokenizer_ids.json: for each tokenizer GGUF, the ids transformers' AutoTokenizer(gguf_file=)
  gives for sample texts without special tokens.
- bad/: a truncated file, a wrong magic, an unknown type id, tensor data past the end, and a
  llama file without tokenizer.ggml.tokens.
"""
import json
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from safetensors.numpy import save_file

from common import FIXTURES, ROOT, check_versions

OUT = os.path.join(FIXTURES, "gguf")
WIKI = os.environ.get("WIKITEXT_DIR") or os.path.join(ROOT, "..", "shared", "data", "wikitext-2")
if not os.path.isdir(WIKI):
    WIKI = os.path.join(ROOT, "data", "wikitext-2")

QK_K = 256


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8).reshape(len(values), 2)


def raw_k_blocks(qtype, n_blocks, rng):
    """Random blocks of a K-quant with finite, moderate f16 scale fields."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    d = f16_bytes(rng.uniform(0.001, 0.1, n_blocks))
    dmin = f16_bytes(rng.uniform(0.001, 0.1, n_blocks))
    if qtype in (T.Q4_K, T.Q5_K):  # d, dmin first
        b[:, 0:2], b[:, 2:4] = d, dmin
    elif qtype == T.Q2_K:  # scales[16], qs[64], d, dmin
        b[:, 80:82], b[:, 82:84] = d, dmin
    elif qtype == T.Q3_K:  # hmask[32], qs[64], scales[12], d
        b[:, 108:110] = d
    elif qtype == T.Q6_K:  # ql[128], qh[64], scales[16], d
        b[:, 208:210] = d
    else:
        raise ValueError(qtype)
    return b


def make_quants(rng):
    path = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(path, "quants")
    w.add_custom_alignment(64)
    rows = 3
    for qtype in [T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        name = qtype.name.lower()
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        if qtype in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
            raw = raw_k_blocks(qtype, rows * 2, rng).reshape(rows, 2 * size)
            w.add_tensor(name, raw, raw_dtype=qtype)
        elif qtype == T.F32:
            w.add_tensor(name, rng.normal(0, 1, (rows, 7)).astype(np.float32))
        elif qtype == T.F16:
            w.add_tensor(name, rng.normal(0, 1, (rows, 7)).astype(np.float16))
        else:
            cols = 5 if qtype == T.BF16 else 2 * block
            data = rng.normal(0, 1, (rows, cols)).astype(np.float32)
            w.add_tensor(name, gguf.quantize(data, qtype), raw_dtype=qtype)
    finish(w)
    r = gguf.GGUFReader(path)
    expected = {t.name: np.ascontiguousarray(gguf.dequantize(t.data, t.tensor_type), dtype=np.float32)
                for t in r.tensors}
    save_file(expected, os.path.join(OUT, "quants_expected.safetensors"))
    return expected


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def train_bpe(texts, vocab_size, metaspace):
    """A small BPE (tokenizers' trainer) on WikiText lines: byte-level, or ▁-prefixed words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
        alphabet = []
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False,
                                  special_tokens=[])
    tok.train_from_iterator(texts, trainer)
    j = json.loads(tok.to_str())
    vocab = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    return [t for t, _ in vocab], merges


def wiki_lines(name, n):
    with open(os.path.join(WIKI, name), encoding="utf-8") as f:
        lines = [l for l in f.read().splitlines(keepends=True) if l.strip()]
    return lines[:n]


SAMPLES_EXTRA = [
    "Hello world", "  two  spaces and\ttabs\nand a newline", "digits 1234567 and 3.14159",
    "Unicode: café, naïve, Ελληνικά, 日本語, emoji 🙂", "<|im_start|>user\nhi<|im_end|>",
    "<s> not special in text </s>", "don't won't I'm they're", "",
]


def llama_metadata(w, *, layers, hidden, heads, kv_heads, ffn, vocab, ctx=256):
    w.add_block_count(layers)
    w.add_context_length(ctx)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(hidden // heads)
    w.add_vocab_size(vocab)


def gpt2_tokenizer_metadata(w, tokens, merges, specials, *, bos, eos, add_bos=False):
    types = [3 if t in specials else 1 for t in tokens]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(0)
    w.add_pad_token_id(eos)
    w.add_add_bos_token(add_bos)
    w.add_add_space_prefix(False)


def llama_cpp_permute(weights, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute (the inverse of transformers' reverse)."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


CONFIG_KEYS = ["model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings",
               "vocab_size", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
               "unk_token_id", "rope_scaling", "hidden_act", "attention_bias", "mlp_bias"]


def make_tiny_llama(rng, texts):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens, merges = train_bpe(texts, 400, metaspace=False)
    tokens = specials + tokens
    layers, hidden, heads, kv_heads, ffn = 2, 32, 4, 2, 64
    d = hidden // heads
    vocab = len(tokens)
    path = os.path.join(OUT, "tiny-llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny llama")
    llama_metadata(w, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, ffn=ffn, vocab=vocab)
    gpt2_tokenizer_metadata(w, tokens, merges, specials, bos=1, eos=2)
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")

    def weight(*shape):
        return rng.normal(0, 0.4, shape).astype(np.float32)

    def add(name, data, qtype=T.F32):
        if qtype == T.F32:
            w.add_tensor(name, data)
        elif qtype == T.F16:
            w.add_tensor(name, data.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quantize(data, qtype), raw_dtype=qtype)

    add("token_embd.weight", weight(vocab, hidden), T.Q8_0)
    add("output_norm.weight", 1 + weight(hidden) * 0.1)
    add("output.weight", weight(vocab, hidden), T.Q5_1)
    kinds = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0, T.BF16, T.F16]
    for l in range(layers):
        k = lambda i: kinds[(l + i) % len(kinds)]
        add(f"blk.{l}.attn_norm.weight", 1 + weight(hidden) * 0.1)
        add(f"blk.{l}.ffn_norm.weight", 1 + weight(hidden) * 0.1)
        add(f"blk.{l}.attn_q.weight", llama_cpp_permute(weight(heads * d, hidden), heads), k(0))
        add(f"blk.{l}.attn_k.weight", llama_cpp_permute(weight(kv_heads * d, hidden), kv_heads), k(1))
        add(f"blk.{l}.attn_v.weight", weight(kv_heads * d, hidden), k(2))
        add(f"blk.{l}.attn_output.weight", weight(hidden, heads * d), k(3))
        add(f"blk.{l}.ffn_gate.weight", weight(ffn, hidden), k(4))
        add(f"blk.{l}.ffn_up.weight", weight(ffn, hidden), k(5))
        add(f"blk.{l}.ffn_down.weight", weight(hidden, ffn), k(0))
    # llama.cpp's Llama 3 files carry rope_freqs; transformers skips it, and so do we.
    add("rope_freqs.weight", np.ones(d // 2, dtype=np.float32))
    finish(w)

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    folder, name = os.path.split(path)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    state = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7, 1]])
    with torch.no_grad():
        state["logits"] = model(ids).logits.float().numpy()
    state["input_ids"] = ids.numpy().astype(np.int64)
    save_file(state, os.path.join(OUT, "tiny-llama_expected.safetensors"))
    full = AutoConfig.from_pretrained(folder, gguf_file=name).to_dict()
    config = {k: full[k] for k in CONFIG_KEYS if k in full}
    with open(os.path.join(OUT, "tiny-llama_config.json"), "w") as f:
        json.dump(config, f, indent=1, sort_keys=True)
    return path


def make_tiny_spm(texts):
    pieces, merges = train_bpe(texts, 500, metaspace=True)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    # SentencePiece BPE scores: a piece's score is minus its rank.
    scores = [0.0, 0.0, 0.0] + [0.0] * 256
    for i, p in enumerate(pieces):
        tokens.append(p)
        types.append(1)
        scores.append(-float(i))
    path = os.path.join(OUT, "tiny-spm.gguf")
    w = gguf.GGUFWriter(path, "llama")
    llama_metadata(w, layers=1, hidden=32, heads=2, kv_heads=2, ffn=64, vocab=len(tokens))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    finish(w)
    return path


def make_tiny_qwen2(texts):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens, merges = train_bpe(texts, 350, metaspace=False)
    tokens = tokens + specials
    path = os.path.join(OUT, "tiny-qwen2.gguf")
    w = gguf.GGUFWriter(path, "qwen2")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(32)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index("<|endoftext|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    finish(w)
    return path


def tokenizer_ids(paths, samples):
    from transformers import AutoTokenizer
    out = {"texts": samples}
    for p in paths:
        folder, name = os.path.split(p)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        out[name] = [tok(s, add_special_tokens=False)["input_ids"] for s in samples]
    with open(os.path.join(OUT, "tokenizer_ids.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False)


def make_bad(texts):
    bad = os.path.join(OUT, "bad")
    os.makedirs(bad, exist_ok=True)
    # A small valid llama file to break: 1 layer, a 16-token vocabulary.
    tokens = ["<|endoftext|>"] + [chr(c) for c in range(ord("a"), ord("a") + 15)]

    def base(path, with_tokens=True):
        w = gguf.GGUFWriter(path, "llama")
        llama_metadata(w, layers=1, hidden=32, heads=2, kv_heads=1, ffn=32, vocab=len(tokens))
        w.add_tokenizer_model("gpt2")
        if with_tokens:
            w.add_token_list(tokens)
        w.add_token_merges(["a b"])
        w.add_bos_token_id(0)
        w.add_eos_token_id(0)
        w.add_tensor("token_embd.weight", np.zeros((len(tokens), 32), dtype=np.float32))
        w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
        finish(w)
        with open(path, "rb") as f:
            return bytearray(f.read())

    good = base(os.path.join(bad, "no_tokenizer_tokens.gguf"), with_tokens=False)
    good = base(os.path.join(tempfile.mkdtemp(), "good.gguf"))
    with open(os.path.join(bad, "truncated.gguf"), "wb") as f:
        f.write(good[:200])
    with open(os.path.join(bad, "bad_magic.gguf"), "wb") as f:
        f.write(b"GGML" + good[4:])
    # The tensor info of output_norm.weight: name, n_dims u32, dims u64..., type u32, offset u64.
    name = b"output_norm.weight"
    at = good.index(struct.pack("<Q", len(name)) + name) + 8 + len(name)
    n_dims = struct.unpack_from("<I", good, at)[0]
    type_at = at + 4 + 8 * n_dims
    unknown = bytearray(good)
    struct.pack_into("<I", unknown, type_at, 99)
    with open(os.path.join(bad, "unknown_type.gguf"), "wb") as f:
        f.write(unknown)
    past = bytearray(good)
    struct.pack_into("<Q", past, type_at + 4, 1 << 20)
    with open(os.path.join(bad, "data_past_end.gguf"), "wb") as f:
        f.write(past)


if __name__ == "__main__":
    check_versions()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(24)
    make_quants(rng)
    texts = wiki_lines("valid.txt", 2000)
    paths = [make_tiny_llama(rng, texts), make_tiny_spm(texts), make_tiny_qwen2(texts)]
    samples = wiki_lines("test.txt", 40) + SAMPLES_EXTRA
    tokenizer_ids(paths, samples)
    make_bad(texts)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total} bytes)")
