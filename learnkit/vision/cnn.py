"""Transfer learning with a zoo arch: its body up to the cut, a new head, fastai v1's ``cnn_learner``.

``create_cnn_model("resnet34", 10)`` is ``nn.Sequential(body, head)``: ``body`` the torchvision
ResNet's children before its cut (avgpool and fc dropped), ``head`` concat pooling, batchnorm,
dropout and linear layers. ``cnn_learner`` (in :mod:`learnkit.vision.learners`) wraps it in a
Learner split into the zoo's layer groups.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from learnkit import registry
from learnkit.errors import UsageError


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pooling and average pooling side by side: twice the channels of either."""

    def __init__(self, size: int = 1):
        super().__init__()
        self.mp, self.ap = nn.AdaptiveMaxPool2d(size), nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], dim=1)


def bn_drop_lin(
    n_in: int, n_out: int, bn: bool = True, p: float = 0.0, actn: nn.Module | None = None
) -> list:
    """The layers ``BatchNorm1d(n_in)``, ``Dropout(p)``, ``Linear(n_in, n_out)``, ``actn``; each optional."""
    layers: list[nn.Module] = [nn.BatchNorm1d(n_in)] if bn else []
    if p != 0:
        layers.append(nn.Dropout(p))
    layers.append(nn.Linear(n_in, n_out))
    if actn is not None:
        layers.append(actn)
    return layers


def create_head(
    nf: int,
    n_out: int,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    bn_final: bool = False,
) -> nn.Sequential:
    """A classifier head taking the body's feature maps to ``n_out`` outputs (fastai v1).

    Args:
        nf: features after pooling (with ``concat_pool``, twice the body's channels).
        n_out: outputs.
        lin_ftrs: sizes of the hidden linear layers (default ``[512]``).
        ps: dropout before each linear layer; one value means that for the last and half of it
            for the others.
        concat_pool: pool with :class:`AdaptiveConcatPool2d`, else average pooling.
        bn_final: end with a ``BatchNorm1d`` over the outputs.
    """
    sizes = [nf, 512, n_out] if lin_ftrs is None else [nf, *lin_ftrs, n_out]
    ps = [ps] if isinstance(ps, int | float) else list(ps)
    if len(ps) == 1:
        ps = [ps[0] / 2] * (len(sizes) - 2) + ps
    if len(ps) != len(sizes) - 1:
        raise UsageError(f"ps needs 1 or {len(sizes) - 1} dropout values, not {len(ps)}")
    actns = [nn.ReLU(inplace=True) for _ in sizes[2:]] + [None]
    layers: list[nn.Module] = [
        AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    for n_in, n_next, p, actn in zip(sizes[:-1], sizes[1:], ps, actns):
        layers += bn_drop_lin(n_in, n_next, True, p, actn)
    if bn_final:
        layers.append(nn.BatchNorm1d(sizes[-1], momentum=0.01))
    return nn.Sequential(*layers)


def create_body(model: nn.Module, cut: int | Callable[[nn.Module], nn.Module]) -> nn.Module:
    """The part of ``model`` a new head goes on: ``children[:cut]`` for an int, else ``cut(model)``.

    The body shares its modules (and so its weights) with ``model``.
    """
    if callable(cut):
        return cut(model)
    if not isinstance(cut, int):
        raise UsageError(f"cut must be an int or a function, not {type(cut).__name__}")
    children = list(model.children())
    if not children[:cut]:
        raise UsageError(
            f"cut {cut} leaves an empty body ({type(model).__name__} has {len(children)} children)"
        )
    return nn.Sequential(*children[:cut])


def num_features_model(body: nn.Module, size: int = 64, in_channels: int = 3) -> int:
    """The channels ``body`` outputs, found by a dummy forward pass on a ``size`` x ``size`` input."""
    param = next(body.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            out = body(torch.zeros(1, in_channels, size, size, device=device))
    finally:
        body.train(was_training)
    return int(out.shape[1])


def build_cnn(
    arch: str,
    n_out: int,
    pretrained: str | Path | None = None,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    bn_final: bool = False,
    **arch_kwargs: Any,
) -> tuple[nn.Sequential, list[nn.Module]]:
    """:func:`create_cnn_model` and its layer groups: the zoo's split cut down to the body, then the head."""
    entry = registry.get(arch)
    cut = entry.cut if cut is None else cut
    if cut is None:
        raise UsageError(f"arch '{arch}' has no cut point for a new head; use it as a plain model")
    full = registry.create(arch, n_out, **arch_kwargs)
    before_cut = full.state_dict(keep_vars=True)  # a cut may drop the head from ``full`` (timm)
    body = create_body(full, cut)
    pretrained = registry.pretrained_file(entry, pretrained)
    if pretrained is not None:
        from learnkit.weights import load_weights, read_state_dict

        skip = _keys_outside(before_cut, body)
        load_weights(full, read_state_dict(pretrained), where=str(pretrained), skip=skip)
    nf = num_features_model(body, size=max(64, entry.min_size))
    head = create_head(nf * (2 if concat_pool else 1), n_out, lin_ftrs, ps, concat_pool, bn_final)
    _init_linear(head)
    body_ids = {id(m) for m in body.modules()} | {id(p) for p in body.parameters()}
    body_groups = [
        nn.Sequential(*g) for g in (_within(group, body_ids) for group in entry.layer_groups(full)) if g
    ]
    return nn.Sequential(body, head), [*(body_groups or [body]), head]


def create_cnn_model(
    arch: str,
    n_out: int,
    pretrained: str | Path | None = None,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    bn_final: bool = False,
    **arch_kwargs: Any,
) -> nn.Sequential:
    """``nn.Sequential(body, head)`` for zoo arch ``arch`` with ``n_out`` outputs.

    Args:
        arch: a zoo name with a cut (``resnet34``, ``mobilenet_v3_small``, ...).
        n_out: outputs of the new head.
        pretrained: a local state-dict file for the whole arch (e.g. torchvision's
            ``resnet34-b627a593.pth`` or a ``.safetensors``); it is loaded before the cut, and the
            keys of the dropped head are ignored. Keys that do not fit raise ``CheckpointError``.
        cut: overrides the zoo's cut (an index into the model's children, or ``cut(model) -> body``).
        lin_ftrs, ps, concat_pool, bn_final: the head, see :func:`create_head`.
        arch_kwargs: passed to the zoo builder (``None`` values dropped).

    Example:
        >>> model = create_cnn_model("resnet18", n_out=3)  # model[0] body, model[1] head
    """
    return build_cnn(arch, n_out, pretrained, cut, lin_ftrs, ps, concat_pool, bn_final, **arch_kwargs)[0]


def _keys_outside(full_state: dict[str, torch.Tensor], body: nn.Module) -> list[str]:
    """The keys of ``full_state`` (the whole arch's ``state_dict(keep_vars=True)``, taken before
    the cut) whose tensors are not in ``body``: the head that is replaced."""
    kept = {id(t) for t in body.state_dict(keep_vars=True).values()}
    return [k for k, t in full_state.items() if id(t) not in kept]


def _within(module: nn.Module, keep: set[int]) -> list[nn.Module]:
    """The largest submodules of ``module`` whose ids are in ``keep``.

    A childless module outside ``keep`` whose parameters all belong to modules in ``keep`` (a
    split's holder of a model's own parameters, like a ViT's position embedding) is kept too.
    """
    if id(module) in keep:
        return [module]
    children = list(module.children())
    params = list(module.parameters(recurse=False))
    if not children and params and all(id(p) in keep for p in params):
        return [module]
    return [m for child in children for m in _within(child, keep)]


def _init_linear(head: nn.Module) -> None:
    """fastai v1's head init: Kaiming-normal linear weights, zero biases."""
    for m in head.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
