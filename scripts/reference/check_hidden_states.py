"""Hidden states of `bertology hidden-states` against transformers' output_hidden_states.

  python check_hidden_states.py fixture
      for every family's tiny fixture (FAMILIES: BERT, RoBERTa, DistilBERT, ELECTRA, GPT-2,
      OpenAI GPT) writes transformers' hidden states for TEXTS (each input run alone, so with no
      padding, zero-padded afterwards to the longest); tests/it/hidden_states.rs compares
      bertology's three poolings against them. bertology batches the inputs together, so the
      comparison also shows that padding (right padding, for the decoders) changes no real
      token's state. Run after make_gpt_fixtures.py (tiny-gpt's tokenizer).
  python check_hidden_states.py check RUN_DIR MODEL_DIR
      reads RUN_DIR/hidden_states.safetensors and hidden_states.json (written with --pool none,
      cls or mean, any --layers, from --text inputs) with safetensors/numpy, recomputes them
      with transformers from MODEL_DIR, and fails unless they agree within 1e-5.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from common import FIXTURES, check_versions

torch.set_num_threads(2)
# (model folder, reference file), both under tests/fixtures; tests/it/hidden_states.rs has the
# same list.
FAMILIES = [
    ("tiny-bert", "tiny_bert_hidden_states.safetensors"),
    ("families/roberta", "families/roberta_hidden_states.safetensors"),
    ("families/distilbert", "families/distilbert_hidden_states.safetensors"),
    ("families/electra", "families/electra_hidden_states.safetensors"),
    ("tiny-gpt2", "tiny_gpt2_hidden_states.safetensors"),
    ("tiny-gpt", "tiny_gpt_hidden_states.safetensors"),
]
# (text, pair): the same inputs tests/it/hidden_states.rs gives on the command line. Short enough
# for the decoders' 16 positions, so nothing is truncated.
TEXTS = [("the cat sat.", "a cat, sitting"), ("hello world", None), ("no", "yes (maybe)")]
TOLERANCE = 1e-5


def max_length(config):
    """The longest input `hidden-states --text` tokenises to: 128, or fewer positions."""
    positions = config.max_position_embeddings  # n_positions for GPT and GPT-2
    if config.model_type == "roberta":  # positions start after padding_idx
        positions -= config.pad_token_id + 1
    return min(128, positions)


def reference(model_dir, texts):
    """Per hidden-state index: [inputs, longest, hidden] zero-padded, plus lengths."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    limit = max_length(model.config)
    states, lengths = [], []
    for a, b in texts:
        # Each family's own pair format: [CLS] A [SEP] B [SEP], <s> A </s></s> B </s>, or (GPT,
        # GPT-2) the two texts' tokens one after the other.
        enc = tok(a, b, truncation=True, max_length=limit, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc, output_hidden_states=True)
        states.append([h[0].double().numpy() for h in out.hidden_states])
        lengths.append(enc["input_ids"].shape[1])
    longest = max(lengths)
    per_layer = []
    for i in range(len(states[0])):
        x = np.zeros((len(texts), longest, states[0][i].shape[-1]))
        for r, s in enumerate(states):
            x[r, : lengths[r]] = s[i]
        per_layer.append(x)
    return per_layer, np.array(lengths)


def pooled(x, lengths, pool):
    if pool == "cls":
        return x[:, 0]
    if pool == "mean":
        return x.sum(1) / lengths[:, None]
    return x


def fixture():
    from transformers import AutoTokenizer

    for model, name in FAMILIES:
        model_dir = os.path.join(FIXTURES, model)
        tok = AutoTokenizer.from_pretrained(model_dir)
        whole = [len(tok(a, b)["input_ids"]) for a, b in TEXTS]
        per_layer, lengths = reference(model_dir, TEXTS)
        assert lengths.tolist() == whole, f"{model}: TEXTS were truncated ({whole} -> {lengths.tolist()})"
        out = {"lengths": lengths.astype(np.int64)}
        for i, x in enumerate(per_layer):
            out[f"hidden_states.{i}"] = x.astype(np.float32)
        path = os.path.join(FIXTURES, name)
        save_file(out, path)
        print(f"wrote {path} ({os.path.getsize(path)} bytes; lengths {lengths.tolist()})")


def check(run_dir, model_dir):
    meta = json.load(open(os.path.join(run_dir, "hidden_states.json")))
    ours = load_file(os.path.join(run_dir, "hidden_states.safetensors"))
    texts = [(e["text_a"], e["text_b"]) for e in meta["examples"]]
    per_layer, lengths = reference(model_dir, texts)
    assert (ours["lengths"] == lengths).all(), (ours["lengths"], lengths)
    worst = 0.0
    for i in meta["layers"]:
        theirs = pooled(per_layer[i], lengths, meta["pool"])
        mine = ours[f"hidden_states.{i}"].astype(np.float64)
        assert mine.shape == theirs.shape, (i, mine.shape, theirs.shape)
        diff = float(np.abs(mine - theirs).max())
        worst = max(worst, diff)
        print(f"hidden_states.{i} {list(mine.shape)}: max |diff| {diff:.2e}")
    if worst > TOLERANCE:
        sys.exit(f"FAIL: max |diff| {worst:.2e} > {TOLERANCE}")
    print(f"OK: {len(meta['layers'])} hidden states within {TOLERANCE} (max {worst:.2e})")


if __name__ == "__main__":
    check_versions()
    if sys.argv[1:2] == ["fixture"]:
        fixture()
    elif sys.argv[1:2] == ["check"] and len(sys.argv) == 4:
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
