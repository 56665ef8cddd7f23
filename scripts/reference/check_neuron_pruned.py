"""Loads models that bertology pruned by feed-forward neurons (and heads) with transformers
4.57.x and checks that their logits equal, within 1e-4, the original model's with the same masks:
the neuron mask as pre-hooks on each MLP output projection (neuron_mask.py), the head mask as
`head_mask` (BERT, RoBERTa, DistilBERT, ELECTRA, GPT-2, GPT) or as o_proj pre-hooks
(llama_head_mask.py).

usage: check_neuron_pruned.py DIR...

Each DIR (or each subfolder of DIR holding one) has pruned_model/, masks.safetensors
(neuron_mask, optional head_mask, input_ids, token_type_ids, attention_mask) and original.txt
(the original model's folder): what `BERTOLOGY_KEEP_NEURON_MODELS=DIR cargo test --release
--test it neurons::` writes. A pruned model whose config has `auto_map` loads through its modelling
file (trust_remote_code); one whose layers all kept the same number of neurons loads in
transformers' own class (its intermediate size rewritten). Exits 1 when a difference exceeds 1e-4.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import load_file

from common import check_versions
from llama_head_mask import head_masked
from neuron_mask import neuron_masked

torch.set_num_threads(2)
AUTO = {"ForSequenceClassification": "AutoModelForSequenceClassification",
        "ForCausalLM": "AutoModelForCausalLM", "LMHeadModel": "AutoModelForCausalLM",
        "ForMaskedLM": "AutoModelForMaskedLM"}


def check(folder):
    t = load_file(os.path.join(folder, "masks.safetensors"))
    original = open(os.path.join(folder, "original.txt")).read().strip()
    pruned_dir = os.path.join(folder, "pruned_model")
    config = json.load(open(os.path.join(pruned_dir, "config.json")))
    arch = config["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(original, attn_implementation="eager").eval()
    auto = next(v for k, v in AUTO.items() if arch.endswith(k))
    remote = "auto_map" in config
    pruned = getattr(transformers, auto).from_pretrained(pruned_dir, trust_remote_code=remote,
                                                         attn_implementation="eager").eval()
    kwargs = {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}
    if getattr(model.config, "type_vocab_size", 1) > 1:
        kwargs["token_type_ids"] = t["token_type_ids"]
    head_mask = t.get("head_mask")
    llama = config["model_type"] in ("llama", "mistral", "qwen2")
    with torch.no_grad(), neuron_masked(model, t["neuron_mask"]):
        if head_mask is not None and llama:
            with head_masked(model, head_mask):
                want = model(**kwargs).logits
        else:
            want = model(**kwargs, head_mask=head_mask).logits
        got = pruned(**kwargs).logits
    d = (got - want).abs().max().item()
    sizes = {}
    for name, p in pruned.named_parameters():
        if name.endswith(("intermediate.dense.weight", "ffn.lin1.weight", "mlp.up_proj.weight")):
            sizes[len(sizes)] = p.shape[0]
        elif name.endswith("mlp.c_fc.weight"):
            sizes[len(sizes)] = p.shape[1]
    kind = "modelling file" if remote else type(pruned).__name__
    print(f"{os.path.basename(folder)}: {kind}, intermediate sizes {list(sizes.values())}, "
          f"max |logit diff| {d:.2e}")
    return d <= 1e-4


def main():
    check_versions()
    folders = []
    for a in sys.argv[1:]:
        if os.path.isfile(os.path.join(a, "masks.safetensors")):
            folders.append(a)
        else:
            folders += sorted(os.path.join(a, d) for d in os.listdir(a)
                              if os.path.isfile(os.path.join(a, d, "masks.safetensors")))
    if not folders:
        sys.exit("check_neuron_pruned.py: no pruned model folders given")
    bad = [f for f in folders if not check(f)]
    if bad:
        sys.exit(f"{len(bad)} of {len(folders)} differ by more than 1e-4: {bad}")
    print(f"all {len(folders)} pruned models reload in transformers with the masked logits")


if __name__ == "__main__":
    main()
