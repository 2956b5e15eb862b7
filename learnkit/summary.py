"""``model_summary``: a layer-by-layer table of a learner's model from one dummy forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from learnkit.layers import flatten_model


def layer_rows(model: nn.Module, layer_groups: list[nn.Module], x: torch.Tensor) -> list[dict]:
    """One dict per leaf layer: name, type, output shape, params, trainable, layer group."""
    group_of = {}
    for gi, group in enumerate(layer_groups):
        for m in group.modules():
            group_of.setdefault(id(m), gi)
    names = {id(m): n for n, m in model.named_modules()}
    rows, hooks = [], []

    def record(module: nn.Module, _inp: Any, out: Any) -> None:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else None
        params = list(module.parameters(recurse=False))
        rows.append(
            {
                "name": names.get(id(module), ""),
                "layer": type(module).__name__,
                "output_shape": shape,
                "params": sum(p.numel() for p in params),
                "trainable": any(p.requires_grad for p in params) if params else None,
                "group": group_of.get(id(module)),
            }
        )

    for layer in flatten_model(model):
        hooks.append(layer.register_forward_hook(record))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return rows


def model_summary(learn: Any, n: int = 70) -> str:
    """A text table of ``learn.model``: layers, output shapes, parameters, trainable, group.

    The dummy input is one batch item of the learner's data (or ``3 x size x size``).
    """
    size = getattr(learn.data, "size", None) or 64
    device = next(learn.model.parameters()).device
    x = torch.zeros(1, 3, size, size, device=device)
    rows = layer_rows(learn.model, learn.layer_groups, x)
    total = sum(p.numel() for p in learn.model.parameters())
    trainable = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    lines = [type(learn.model).__name__, "=" * n]
    lines.append(f"{'Layer (type)':<28}{'Output Shape':<22}{'Param #':>10}  Trainable  Group")
    lines.append("=" * n)
    for r in rows:
        shape = "x".join(map(str, r["output_shape"][1:])) if r["output_shape"] else "-"
        lines.append(f"{r['layer']:<28}{shape:<22}{r['params']:>10,}  {str(r['trainable']):<9}  {r['group']}")
    lines.append("_" * n)
    lines.append(f"Total params: {total:,}")
    lines.append(f"Trainable params: {trainable:,}")
    lines.append(f"Non-trainable params: {total - trainable:,}")
    lines.append(f"Layer groups: {len(learn.layer_groups)}")
    lines.append(f"Optimizer: {type(learn.opt.opt).__name__ if learn.opt else 'not created yet'}")
    lines.append(f"Loss function: {type(learn.loss_func).__name__}")
    return "\n".join(lines)
