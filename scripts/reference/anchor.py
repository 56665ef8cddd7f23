"""The anchor's algorithms (run_bertology.py, transformers 4.57.x), and the paper's per-example
importance, as plain functions over a transformers BertForSequenceClassification.

compute_heads_importance and mask_heads follow run_bertology.py line for line (including its
never-zeroed mask gradient); per_example_importance is E_x |dL(x)/dxi|, one example at a time.
"""
import numpy as np
import torch


def entropy(p):
    plogp = p * torch.log(p)
    plogp[p == 0] = 0
    return -plogp.sum(dim=-1)


def batches(tok, rows, batch_size, max_length=128, pad_to_max=True):
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        enc = tok([r[0] for r in chunk], [r[1] for r in chunk], truncation=True, max_length=max_length,
                  padding="max_length" if pad_to_max else "longest", return_tensors="pt")
        enc["labels"] = torch.tensor([r[2] for r in chunk])
        yield dict(enc)


def normalise(head_importance, layer_norm=True, global_norm=True):
    if layer_norm:
        norm_by_layer = torch.pow(torch.pow(head_importance, 2).sum(-1), 1 / 2)
        head_importance = head_importance / (norm_by_layer.unsqueeze(-1) + 1e-20)
    if global_norm:
        head_importance = (head_importance - head_importance.min()) / (head_importance.max() - head_importance.min())
    return head_importance


def compute_heads_importance(model, loader, compute_entropy=True, head_mask=None, layer_norm=True, global_norm=True,
                             actually_pruned=False):
    """run_bertology.compute_heads_importance: returns entropy, normalised and raw importance, logits, labels.
    With actually_pruned (a pruned model) no mask is passed and no importance is taken, as the anchor does."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    head_importance = torch.zeros(n_layers, n_heads)
    attn_entropy = torch.zeros(n_layers, n_heads)
    if head_mask is None:
        head_mask = torch.ones(n_layers, n_heads)
    head_mask.requires_grad_(requires_grad=True)
    preds, labels, tot_tokens = [], [], 0.0
    for inputs in loader:
        outputs = model(**inputs, head_mask=None if actually_pruned else head_mask, output_attentions=True)
        loss, logits, all_attentions = outputs.loss, outputs.logits, outputs.attentions
        loss.backward()
        if compute_entropy:
            for layer, attn in enumerate(all_attentions):
                masked_entropy = entropy(attn.detach()) * inputs["attention_mask"].float().unsqueeze(1)
                attn_entropy[layer] += masked_entropy.sum(-1).sum(0).detach()
        if not actually_pruned:
            head_importance += head_mask.grad.abs().detach()
        preds.append(logits.detach())
        labels.append(inputs["labels"])
        tot_tokens += inputs["attention_mask"].float().detach().sum().data
    attn_entropy /= tot_tokens
    head_importance /= tot_tokens
    raw = head_importance.clone()
    head_importance = normalise(head_importance, layer_norm, global_norm)
    return attn_entropy, head_importance, raw, torch.cat(preds), torch.cat(labels)


def per_example_importance(model, loader, head_mask=None, layer_norm=True, global_norm=True):
    """E_x |dL(x)/dxi|: the gradient of each example's own loss, one example at a time."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    total = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    count = 0
    preds = []
    for inputs in loader:
        for i in range(inputs["input_ids"].shape[0]):
            one = {k: v[i:i + 1] for k, v in inputs.items()}
            xi = (torch.ones(n_layers, n_heads) if head_mask is None else head_mask.clone()).requires_grad_(True)
            out = model(**one, head_mask=xi)
            (g,) = torch.autograd.grad(out.loss, xi)
            total += g.abs().double()
            count += 1
            preds.append(out.logits.detach())
    raw = (total / count).float()
    return normalise(raw.clone(), layer_norm, global_norm), raw, torch.cat(preds)


def accuracy(logits, labels):
    return (logits.argmax(-1) == labels).float().mean().item()


def mask_heads(model, loader, masking_threshold=0.9, masking_amount=0.1, metric=accuracy):
    """run_bertology.mask_heads: returns the final mask and the curve [(heads kept, score)]."""
    _, head_importance, _, preds, labels = compute_heads_importance(model, loader, compute_entropy=False)
    original_score = metric(preds, labels)
    new_head_mask = torch.ones_like(head_importance)
    num_to_mask = max(1, int(new_head_mask.numel() * masking_amount))
    current_score = original_score
    head_mask = new_head_mask.clone()
    curve = [(int(new_head_mask.sum().item()), original_score)]
    while current_score >= original_score * masking_threshold:
        head_mask = new_head_mask.clone().detach()
        head_importance[head_mask == 0.0] = float("Inf")
        current_heads_to_mask = head_importance.view(-1).sort()[1]
        if len(current_heads_to_mask) <= num_to_mask:
            break
        current_heads_to_mask = current_heads_to_mask[:num_to_mask]
        # The anchor writes into a mask that compute_heads_importance made require grad, which
        # current torch refuses; detaching first changes no value.
        new_head_mask = new_head_mask.detach().clone().view(-1)
        new_head_mask[current_heads_to_mask] = 0.0
        new_head_mask = new_head_mask.view_as(head_mask).clone().detach()
        _, head_importance, _, preds, labels = compute_heads_importance(
            model, loader, compute_entropy=False, head_mask=new_head_mask)
        current_score = metric(preds, labels)
        curve.append((int(new_head_mask.sum().item()), current_score))
        if new_head_mask.sum() == 0:  # the anchor would loop forever here; stop the reference
            break
    return head_mask, curve, original_score
