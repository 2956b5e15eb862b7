"""``model_summary``: a layer-by-layer table of a learner's model from one dummy forward pass."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from learnkit.layers import flatten_model

if TYPE_CHECKING:
    from learnkit.learner import Learner


class PrettyString(str):
    """A string whose ``repr`` is itself: a notebook shows ``learn.summary()`` as text (v1's)."""

    def __repr__(self) -> str:
        return str(self)


def layer_rows(model: nn.Module, layer_groups: list[nn.Module], x: Any) -> list[dict]:
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
            model(*x) if isinstance(x, (list, tuple)) else model(x)
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    return rows


def summary_input(learn: Learner) -> Any:
    """What :func:`model_summary` runs through the model: the first item of one batch of the
    learner's data (training set, else validation, else test), as fastai v1 does, so any input
    shape works; a ``3 x size x size`` zero image when the data has no loader (a model alone)."""
    data = learn.data
    for name in ("train_dl", "valid_dl", "test_dl"):
        dl = getattr(data, name, None)
        if dl is None or len(dl) == 0:
            continue
        ds_type = {"train_dl": "Train", "valid_dl": "Valid", "test_dl": "Test"}[name]
        if hasattr(data, "one_batch"):
            from learnkit.data import DatasetType

            xb = data.one_batch(DatasetType[ds_type])[0]
        else:
            xb = next(iter(dl))[0]
        return [x[:1] for x in xb] if isinstance(xb, (list, tuple)) else xb[:1]
    size = getattr(data, "size", None) or 64
    device = next(learn.model.parameters()).device
    return torch.zeros(1, 3, size, size, device=device)


def model_summary(learn: Learner, n: int = 70) -> str:
    """A text table of ``learn.model``: layers, output shapes, parameters, trainable, group.

    The input is one item of a batch of the learner's data (see :func:`summary_input`).
    """
    x = summary_input(learn)
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
