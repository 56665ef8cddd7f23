"""A mask over the intermediate neurons of every feed-forward block (MLP), for transformers 4.57.x
models of every family bertology supports, which have no such argument.

`apply_neuron_mask(model, mask)` registers a forward pre-hook on each layer's MLP output
projection that multiplies its input (the activations, [batch, seq, N]) by that layer's mask over
its N neurons, and returns the hook handles (or use `neuron_masked` as a context manager):

    BERT, RoBERTa, ELECTRA   layer.output.dense   (after intermediate.dense and the activation)
    DistilBERT               ffn.lin2             (after lin1 and the activation)
    GPT-2, GPT               mlp.c_proj           (after c_fc and the activation)
    Llama, Mistral, Qwen2    mlp.down_proj        (after act(gate_proj) * up_proj)

The mask may be a tensor [layers, N] (every example), [batch, layers, N] (one per example), or a
list of one tensor per layer, [N_l] or [batch, N_l] (layers pruned to different sizes). It may
require grad: the hook is differentiable, so d(loss)/d(mask) is the neurons' importance.
"""
from contextlib import contextmanager


def mlp_output_modules(model):
    """The MLP output projection of each layer, in layer order."""
    mods = []
    for module in model.modules():
        intermediate = getattr(module, "intermediate", None)
        ffn = getattr(module, "ffn", None)
        mlp = getattr(module, "mlp", None)
        if intermediate is not None and hasattr(intermediate, "dense") and hasattr(module, "output"):
            mods.append(module.output.dense)
        elif ffn is not None and hasattr(ffn, "lin2"):
            mods.append(ffn.lin2)
        elif mlp is not None and hasattr(mlp, "c_fc"):
            mods.append(mlp.c_proj)
        elif mlp is not None and hasattr(mlp, "down_proj"):
            mods.append(mlp.down_proj)
    assert mods, "no feed-forward blocks found"
    return mods


def _width(module):
    if hasattr(module, "in_features"):
        return module.in_features
    return module.weight.shape[0]  # Conv1D: [in, out]


def _layer_mask(mask, layer):
    if isinstance(mask, (list, tuple)) or mask.dim() == 2:
        return mask[layer]
    if mask.dim() == 3:
        return mask[:, layer]
    raise ValueError(f"neuron mask of shape {tuple(mask.shape)}: [layers, N] or [batch, layers, N] expected")


def apply_neuron_mask(model, mask):
    """Registers the pre-hooks; returns their handles."""
    handles = []
    for layer, module in enumerate(mlp_output_modules(model)):
        m = _layer_mask(mask, layer)
        if m.shape[-1] != _width(module):
            raise ValueError(f"layer {layer}: mask over {m.shape[-1]} neurons, the MLP has {_width(module)}")

        def hook(mod, args, m=m):
            (x,) = args  # [batch, seq, N]
            scale = m.to(x.dtype)
            scale = scale.view(1, 1, -1) if scale.dim() == 1 else scale.view(x.shape[0], 1, -1)
            return (x * scale,)

        handles.append(module.register_forward_pre_hook(hook))
    return handles


@contextmanager
def neuron_masked(model, mask):
    handles = apply_neuron_mask(model, mask) if mask is not None else []
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
