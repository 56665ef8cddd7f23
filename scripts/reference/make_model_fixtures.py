"""Writes the parity fixtures of the model issue into tests/fixtures/ (run by scripts/make-fixtures.sh).

- tiny-bert/: a tiny random BertForSequenceClassification checkpoint (config + safetensors).
- tiny_parity.safetensors: inputs, head masks, and transformers' logits, attentions and hidden
  states with no mask, a [layers, heads] mask with zeros, and a per-example mask.
- tiny-bert-pruned/ + tiny_pruned_logits.safetensors: the tiny model after prune_heads, and its logits.
- minilm_classifier.safetensors: a classifier for all-MiniLM-L6-v2 fitted by logistic regression
  on pooled MRPC train features (so its predictions are not constant), and minilm_mrpc_dev.safetensors:
  transformers' logits for all 408 MRPC dev pairs (dynamic padding), with accuracy and F1 in
  minilm_mrpc_dev.json.
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from common import FIXTURES, MINILM, check_versions, read_mrpc

torch.manual_seed(0)
torch.set_num_threads(2)


def write_tiny_vocab(folder):
    """A 64-token character-level WordPiece vocabulary, so the tiny model can read real text."""
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters + ["##" + c for c in letters]
    vocab += [".", ",", "'", '"', "-", "(", ")"]
    assert len(vocab) == 64
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 40, "tokenizer_class": "BertTokenizer"}, f)


def tiny():
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=40, type_vocab_size=2, num_labels=3,
        hidden_act="gelu", attn_implementation="eager",
    )
    model = BertForSequenceClassification(config).eval()
    # Larger weights than the default init so attention is far from uniform.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" not in name and p.dim() == 2:
                p.normal_(0, 0.2)
            elif "LayerNorm" not in name:
                p.normal_(0, 0.05)
    out = os.path.join(FIXTURES, "tiny-bert")
    model.save_pretrained(out, safe_serialization=True)
    write_tiny_vocab(out)
    model.config.attn_implementation = "eager"

    g = torch.Generator().manual_seed(1)
    b, t = 3, 9
    ids = torch.randint(1, 64, (b, t), generator=g)
    types = torch.zeros(b, t, dtype=torch.long)
    types[:, 5:] = 1
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    types[mask == 0] = 0
    L, H = 3, 4
    mask2d = torch.ones(L, H)
    mask2d[0, 1] = 0
    mask2d[1, 0] = 0
    mask2d[1, 3] = 0
    mask2d[2, 2] = 0.5
    mask3d = (torch.rand(b, L, H, generator=g) > 0.4).float()

    tensors = {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
               "head_mask_2d": mask2d, "head_mask_3d": mask3d}
    for case, hm in [("none", None), ("2d", mask2d), ("3d", mask3d.permute(1, 0, 2)[:, :, :, None, None])]:
        with torch.no_grad():
            o = model(input_ids=ids, token_type_ids=types, attention_mask=mask, head_mask=hm,
                      output_attentions=True, output_hidden_states=True)
        tensors[f"{case}.logits"] = o.logits
        for i, a in enumerate(o.attentions):
            tensors[f"{case}.attentions.{i}"] = a
        for i, h in enumerate(o.hidden_states):
            tensors[f"{case}.hidden_states.{i}"] = h
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(FIXTURES, "tiny_parity.safetensors"))

    # Pruning: one head of layer 0, two of layer 1 (transformers cannot run a layer with no heads:
    # its view(batch, -1, 0, head_dim) fails, so that case is tested against our own masked model).
    model.prune_heads({0: [1], 1: [0, 3]})
    pruned = os.path.join(FIXTURES, "tiny-bert-pruned")
    model.save_pretrained(pruned, safe_serialization=True)
    write_tiny_vocab(pruned)
    with torch.no_grad():
        logits = model(input_ids=ids, token_type_ids=types, attention_mask=mask).logits
    save_file({"logits": logits.contiguous()}, os.path.join(FIXTURES, "tiny_pruned_logits.safetensors"))


def minilm():
    tok = AutoTokenizer.from_pretrained(MINILM)
    model = BertForSequenceClassification.from_pretrained(MINILM, num_labels=2, attn_implementation="eager").eval()

    def encode(rows):
        return tok([r[0] for r in rows], [r[1] for r in rows], padding="longest", truncation=True,
                   max_length=128, return_tensors="pt")

    # Fit the classifier on pooled features of MRPC train, so the fixture predicts both classes.
    train = read_mrpc("train")[:1024]
    feats = []
    with torch.no_grad():
        for i in range(0, len(train), 64):
            enc = encode(train[i:i + 64])
            feats.append(model.bert(**enc).pooler_output)
    x = torch.cat(feats)
    y = torch.tensor([r[2] for r in train])
    clf = torch.nn.Linear(x.shape[1], 2)
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(clf(x), y) + 1e-3 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    save_file({"classifier.weight": clf.weight.detach().contiguous(), "classifier.bias": clf.bias.detach().contiguous()},
              os.path.join(FIXTURES, "minilm_classifier.safetensors"))
    with torch.no_grad():
        model.classifier.weight.copy_(clf.weight)
        model.classifier.bias.copy_(clf.bias)

    dev = read_mrpc("dev")
    logits = []
    with torch.no_grad():
        for i in range(0, len(dev), 32):
            logits.append(model(**encode(dev[i:i + 32])).logits)
    logits = torch.cat(logits)
    preds = logits.argmax(-1)
    labels = torch.tensor([r[2] for r in dev])
    acc = (preds == labels).float().mean().item()
    tp = ((preds == 1) & (labels == 1)).sum().item()
    fp = ((preds == 1) & (labels == 0)).sum().item()
    fn = ((preds == 0) & (labels == 1)).sum().item()
    f1 = 2 * tp / (2 * tp + fp + fn)
    save_file({"logits": logits.contiguous(), "predictions": preds.contiguous()},
              os.path.join(FIXTURES, "minilm_mrpc_dev.safetensors"))
    with open(os.path.join(FIXTURES, "minilm_mrpc_dev.json"), "w") as f:
        json.dump({"examples": len(dev), "acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2,
                   "positive_predictions": int(preds.sum())}, f, indent=2)
    print(f"minilm fixture: acc {acc:.4f} f1 {f1:.4f} positives {int(preds.sum())}/{len(dev)}")


if __name__ == "__main__":
    check_versions()
    os.makedirs(FIXTURES, exist_ok=True)
    tiny()
    minilm()
