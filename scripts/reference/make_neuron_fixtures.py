"""Writes tests/fixtures/neurons/<name>.safetensors (run by scripts/make-fixtures.sh): for each
family's tiny fixture, transformers 4.57.x with a neuron mask on every feed-forward block
(neuron_mask.py: a forward pre-hook on the MLP output projection):

- inputs: input_ids, token_type_ids, attention_mask [3, 9] (rows 1 and 2 right-padded), labels
  (classes, or for language models the ids with -100 at padding);
- neuron_mask_2d [layers, N] (zeros and a 0.5) and neuron_mask_3d [3, layers, N] (per example);
  `2d.logits`, `3d.logits`, `2d.loss` under them, and `2d.mask_grad`, the gradient of the batch
  loss with respect to the 2-D mask;
- `importance.per_example` [layers, N]: E_x |dL(x)/dm| (each example's own loss, a per-example
  mask of ones), and `importance.anchor`: |dL/dm| of the batch-mean loss divided by the
  non-padding tokens (run_bertology.py's estimator for one batch); both unnormalised.
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file

from common import FIXTURES, check_versions
from neuron_mask import mlp_output_modules, neuron_masked

OUT = os.path.join(FIXTURES, "neurons")
MODELS = ["tiny-bert", "families/roberta", "families/distilbert", "families/electra", "tiny-gpt2",
          "tiny-gpt", "families/llama", "families/mistral", "families/qwen2", "families/llama-cls"]
torch.set_num_threads(2)


def load(folder):
    arch = json.load(open(os.path.join(folder, "config.json")))["architectures"][0]
    model = getattr(transformers, arch).from_pretrained(folder, attn_implementation="eager")
    return model.eval()


def inputs(config, g):
    b, t = 3, 9
    ids = torch.randint(5, min(config.vocab_size, 60), (b, t), generator=g)
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    pad = getattr(config, "pad_token_id", None)
    ids[mask == 0] = pad if pad is not None else 0
    types = torch.zeros(b, t, dtype=torch.long)
    if getattr(config, "type_vocab_size", 1) > 1:
        types[:, 5:] = 1
        types[mask == 0] = 0
    return ids, types, mask


def per_example_losses(model, logits, labels, lm):
    if not lm:
        return torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    each = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none",
                                             ignore_index=-100)
    counted = (labels != -100).float()
    return each.sum(-1) / counted.sum(-1).clamp_min(1)


def make(name):
    folder = os.path.join(FIXTURES, name)
    model = load(folder)
    lm = "ForSequenceClassification" not in type(model).__name__
    g = torch.Generator().manual_seed(7)
    ids, types, attn = inputs(model.config, g)
    if lm:
        labels = ids.masked_fill(attn == 0, -100)
    else:
        labels = torch.tensor([0, 1, 1]) % model.config.num_labels
    kwargs = {"input_ids": ids, "attention_mask": attn}
    if getattr(model.config, "type_vocab_size", 1) > 1:
        kwargs["token_type_ids"] = types
    widths = [m.in_features if hasattr(m, "in_features") else m.weight.shape[0]
              for m in mlp_output_modules(model)]
    L, N = len(widths), widths[0]
    mask2d = (torch.rand(L, N, generator=g) > 0.3).float()
    mask2d[0, 1] = 0.5
    mask3d = (torch.rand(3, L, N, generator=g) > 0.4).float()
    t = {"input_ids": ids, "token_type_ids": types, "attention_mask": attn, "labels": labels,
         "neuron_mask_2d": mask2d, "neuron_mask_3d": mask3d}

    def run(mask):
        with neuron_masked(model, mask):
            return model(**kwargs).logits

    leaf = mask2d.clone().requires_grad_(True)
    logits = run(leaf)
    loss = per_example_losses(model, logits, labels, lm)
    if lm:
        lab = labels[:, 1:]
        batch_loss = (loss * (lab != -100).sum(-1)).sum() / (lab != -100).sum()
    else:
        batch_loss = loss.mean()
    batch_loss.backward()
    t["2d.logits"] = logits.detach()
    t["2d.loss"] = batch_loss.detach().reshape(1)
    t["2d.mask_grad"] = leaf.grad.detach()
    with torch.no_grad():
        t["3d.logits"] = run(mask3d)
    # Per-example estimator: each example's own mask row.
    per = torch.ones(3, L, N, requires_grad=True)
    per_example_losses(model, run(per), labels, lm).sum().backward()
    t["importance.per_example"] = per.grad.abs().mean(0)
    # The anchor for one batch: the batch-mean loss, |gradient| / tokens.
    shared = torch.ones(L, N, requires_grad=True)
    logits = run(shared)
    if lm:
        mean_loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2),
                                                      labels[:, 1:], ignore_index=-100)
    else:
        mean_loss = torch.nn.functional.cross_entropy(logits, labels)
    mean_loss.backward()
    t["importance.anchor"] = shared.grad.abs() / attn.sum()
    out = os.path.join(OUT, name.split("/")[-1] + ".safetensors")
    save_file({k: v.contiguous() for k, v in t.items()}, out)
    print(f"{name}: {L} layers x {N} neurons, loss {batch_loss.item():.5f}")


def main():
    check_versions()
    os.makedirs(OUT, exist_ok=True)
    for name in MODELS:
        make(name)


if __name__ == "__main__":
    main()
