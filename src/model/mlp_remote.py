"""Models whose feed-forward blocks bertology pruned to a different size in each layer, for
transformers (4.57).

transformers has one intermediate size for every layer, so bertology saves this file beside
such a model's weights and names a class of it in config.json's `auto_map`:

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

`Bertology<Class>` is transformers' own `<Class>` (any of them: the module makes it on demand)
with each layer's feed-forward projections cut to the neurons `pruned_neurons` (layer ->
original intermediate neurons removed) leaves: the rows of the input projections
(`intermediate.dense`, DistilBERT's `lin1`, GPT's `c_fc`, Llama's `gate_proj` and `up_proj`)
and the columns of the output projection (`output.dense`, `lin2`, the MLP's `c_proj`,
`down_proj`). Heads are left to the class (its own `pruned_heads`).
"""
import torch
import transformers
from torch import nn


def kept_neurons(config, layer, size):
    """The original neurons layer `layer` keeps out of `size`."""
    pruned = {int(k): set(v) for k, v in (getattr(config, "pruned_neurons", None) or {}).items()}
    return [n for n in range(size) if n not in pruned.get(layer, set())]


def _mlp_blocks(model):
    """Per layer, in order: the (parent, attribute, side) of each module whose size is the
    intermediate size; side "out" for input projections (their outputs are the neurons), "in"
    for the output projection."""
    blocks = []
    for module in model.modules():
        intermediate = getattr(module, "intermediate", None)
        ffn = getattr(module, "ffn", None)
        mlp = getattr(module, "mlp", None)
        if intermediate is not None and hasattr(intermediate, "dense") and hasattr(module, "output"):
            # BertLayer, RobertaLayer, ElectraLayer, XLM-R and CamemBERT.
            blocks.append([(intermediate, "dense", "out"), (module.output, "dense", "in")])
        elif ffn is not None and hasattr(ffn, "lin1"):
            # DistilBERT's TransformerBlock.
            blocks.append([(ffn, "lin1", "out"), (ffn, "lin2", "in")])
        elif mlp is not None and hasattr(mlp, "c_fc"):
            # GPT-2 and GPT blocks: Conv1D weights stored [in, out].
            blocks.append([(mlp, "c_fc", "out"), (mlp, "c_proj", "in")])
        elif mlp is not None and hasattr(mlp, "gate_proj"):
            # Llama, Mistral, Qwen2 decoder layers.
            blocks.append([(mlp, "gate_proj", "out"), (mlp, "up_proj", "out"), (mlp, "down_proj", "in")])
    return blocks


def _mlp_size(module, side):
    if isinstance(module, nn.Linear):
        return module.out_features if side == "out" else module.in_features
    rows, cols = module.weight.shape  # Conv1D: [in, out]
    return cols if side == "out" else rows


def _resized_mlp(module, side, size):
    weight = module.weight
    if isinstance(module, nn.Linear):
        inputs, outputs = module.in_features, module.out_features
        if side == "out":
            outputs = size
        else:
            inputs = size
        return nn.Linear(inputs, outputs, bias=module.bias is not None, dtype=weight.dtype,
                         device=weight.device)
    rows, cols = weight.shape
    if side == "out":
        cols = size
    else:
        rows = size
    new = type(module)(cols, rows)  # Conv1D(nf=outputs, nx=inputs)
    if weight.device.type == "meta":
        return new.to_empty(device="meta")
    return new.to(dtype=weight.dtype, device=weight.device)


def _cut_mlps(model, config):
    pruned = getattr(config, "pruned_neurons", None) or {}
    if not pruned:
        return
    for layer, block in enumerate(_mlp_blocks(model)):
        parent, name, side = block[0]
        size = _mlp_size(getattr(parent, name), side)
        kept = len(kept_neurons(config, layer, size))
        if kept == size:
            continue
        for parent, name, side in block:
            setattr(parent, name, _resized_mlp(getattr(parent, name), side, kept))


def _pruned_mlps(base):
    class Pruned(base):
        def __init__(self, config, *args, **kwargs):
            super().__init__(config, *args, **kwargs)
            _cut_mlps(self, config)

    Pruned.__name__ = Pruned.__qualname__ = "Bertology" + base.__name__
    return Pruned


def __getattr__(name):
    """`Bertology<Class>` for any transformers model class, made on first use."""
    if name.startswith("Bertology"):
        base = getattr(transformers, name[len("Bertology"):], None)
        if isinstance(base, type) and issubclass(base, torch.nn.Module):
            cls = _pruned_mlps(base)
            globals()[name] = cls
            return cls
    raise AttributeError(name)
