"""Writes the parity fixtures of the model-families issue into tests/fixtures/families/
(run by scripts/make-fixtures.sh), for RoBERTa, DistilBERT and ELECTRA with transformers 4.57.x:

- <family>/: a tiny random <Family>ForSequenceClassification checkpoint (3 layers x 4 heads,
  3 labels, weights and LayerNorms drawn far from the defaults so a wrong port cannot hide in
  the tolerance) with its tokenizer files (tokenizer.json and the family's vocabulary files);
- <family>_parity.safetensors: inputs, head masks, labels; transformers' logits, attentions and
  hidden states with no mask, a [layers, heads] mask with zeros and 0.5, and a per-example mask;
  the gradient of the loss with respect to the 2-D and the per-example mask;
- <family>-pruned/ + <family>_pruned_logits.safetensors: the model after prune_heads, its logits;
- <family>_tokens.json: a digest of the fast tokenizer's ids (and token types where the family
  returns them) for every MRPC dev pair, truncated to 128 tokens.
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import (AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification,
                          DistilBertTokenizerFast, ElectraConfig, ElectraForSequenceClassification,
                          ElectraTokenizerFast, RobertaConfig, RobertaForSequenceClassification,
                          RobertaTokenizerFast)

from common import FIXTURES, check_versions, read_mrpc

OUT = os.path.join(FIXTURES, "families")
TINY_VOCAB = os.path.join(FIXTURES, "tiny-bert", "vocab.txt")
torch.set_num_threads(2)


def fnv1a(text):
    """64-bit FNV-1a of a string's UTF-8 bytes, as hex (tests/it/families.rs computes the same)."""
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def roberta_tokenizer(folder):
    """A byte-level BPE trained on MRPC train sentences (400 tokens), saved as RoBERTa's."""
    rows = read_mrpc("train")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for r in rows for t in r[:2]], vocab_size=400, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    os.makedirs(folder, exist_ok=True)
    bpe.save_model(folder)
    tok = RobertaTokenizerFast(vocab_file=os.path.join(folder, "vocab.json"),
                               merges_file=os.path.join(folder, "merges.txt"), model_max_length=128)
    tok.save_pretrained(folder)
    return tok


def wordpiece_tokenizer(folder, cls):
    os.makedirs(folder, exist_ok=True)
    shutil.copy(TINY_VOCAB, os.path.join(folder, "vocab.txt"))
    tok = cls(vocab_file=os.path.join(folder, "vocab.txt"), do_lower_case=True, model_max_length=128)
    tok.save_pretrained(folder)
    return tok


def randomise(model):
    """Weights far from the defaults: N(0, 0.2) matrices, N(0, 0.05) biases, LayerNorms
    N(1, 0.1) / N(0, 0.05), so every parameter matters to the outputs."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1 if name.endswith("weight") else 0.05)
            elif p.dim() == 2:
                p.normal_(0, 0.2)
            else:
                p.normal_(0, 0.05)


def inputs(vocab, pad, g, uses_types):
    b, t = 3, 9
    ids = torch.randint(5, vocab, (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = pad
    types = torch.zeros(b, t, dtype=torch.long)
    if uses_types:
        types[:, 5:] = 1
        types[mask == 0] = 0
    return ids, types, mask


def make(family, model, tok, pad, uses_types):
    torch.manual_seed(0)
    randomise(model)
    model.eval()
    folder = os.path.join(OUT, family)
    model.save_pretrained(folder, safe_serialization=True)
    g = torch.Generator().manual_seed(1)
    ids, types, mask = inputs(model.config.vocab_size, pad, g, uses_types)
    L, H = 3, 4
    mask2d = torch.ones(L, H)
    mask2d[0, 1] = 0
    mask2d[1, 0] = 0
    mask2d[1, 3] = 0
    mask2d[2, 2] = 0.5
    mask3d = (torch.rand(3, L, H, generator=g) > 0.4).float()
    labels = torch.tensor([0, 2, 1])
    kwargs = {"input_ids": ids, "attention_mask": mask}
    if uses_types:
        kwargs["token_type_ids"] = types
    tensors = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
               "head_mask_2d": mask2d, "head_mask_3d": mask3d, "labels": labels}
    for case, hm in [("none", None), ("2d", mask2d), ("3d", mask3d)]:
        leaf = None
        if hm is not None:
            leaf = hm.clone().requires_grad_(True)
            hm = leaf if case == "2d" else leaf.permute(1, 0, 2)[:, :, :, None, None]
        o = model(**kwargs, head_mask=hm, labels=labels, output_attentions=True, output_hidden_states=True)
        if leaf is not None:
            o.loss.backward()
            tensors[f"{case}.mask_grad"] = leaf.grad.detach()
        tensors[f"{case}.loss"] = o.loss.detach().reshape(1)
        tensors[f"{case}.logits"] = o.logits.detach()
        for i, a in enumerate(o.attentions):
            tensors[f"{case}.attentions.{i}"] = a.detach()
        for i, h in enumerate(o.hidden_states):
            tensors[f"{case}.hidden_states.{i}"] = h.detach()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, f"{family}_parity.safetensors"))

    model.prune_heads({0: [1], 1: [0, 3]})
    pruned = os.path.join(OUT, f"{family}-pruned")
    model.save_pretrained(pruned, safe_serialization=True)
    tok.save_pretrained(pruned)
    with torch.no_grad():
        logits = model(**kwargs).logits
    save_file({"logits": logits.contiguous()}, os.path.join(OUT, f"{family}_pruned_logits.safetensors"))

    # Tokenisation of every MRPC dev pair by transformers' fast tokenizer, reloaded from disk.
    fast = AutoTokenizer.from_pretrained(folder)
    digests = []
    for a, b, _ in read_mrpc("dev"):
        enc = fast(a, b, truncation=True, max_length=128)
        text = ",".join(map(str, enc["input_ids"]))
        if "token_type_ids" in enc:
            text += "|" + ",".join(map(str, enc["token_type_ids"]))
        digests.append(fnv1a(text))
    with open(os.path.join(OUT, f"{family}_tokens.json"), "w") as f:
        json.dump({"max_length": 128, "token_type_ids": "token_type_ids" in enc,
                   "tokenizer": type(fast).__name__, "digests": digests}, f)
    print(f"{family}: vocab {model.config.vocab_size}, logits {tensors['none.logits'][0].tolist()}")


def main():
    check_versions()
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)

    folder = os.path.join(OUT, "roberta")
    tok = roberta_tokenizer(folder)
    config = RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=37, max_position_embeddings=130, type_vocab_size=1, num_labels=3,
                           pad_token_id=tok.pad_token_id, bos_token_id=0, eos_token_id=2,
                           attn_implementation="eager")
    make("roberta", RobertaForSequenceClassification(config), tok, tok.pad_token_id, False)

    folder = os.path.join(OUT, "distilbert")
    tok = wordpiece_tokenizer(folder, DistilBertTokenizerFast)
    config = DistilBertConfig(vocab_size=64, dim=32, n_layers=3, n_heads=4, hidden_dim=37,
                              max_position_embeddings=128, num_labels=3, activation="gelu",
                              attn_implementation="eager")
    make("distilbert", DistilBertForSequenceClassification(config), tok, 0, False)

    folder = os.path.join(OUT, "electra")
    tok = wordpiece_tokenizer(folder, ElectraTokenizerFast)
    config = ElectraConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=3,
                           num_attention_heads=4, intermediate_size=37, max_position_embeddings=128,
                           num_labels=3, attn_implementation="eager")
    make("electra", ElectraForSequenceClassification(config), tok, 0, True)


if __name__ == "__main__":
    main()
