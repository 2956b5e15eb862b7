"""Small helpers over modules: which layers are norm layers, flattening, freezing, initialisation."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


def is_norm(module: nn.Module) -> bool:
    """True for batch/instance/layer/group norm layers (the ones ``train_bn`` and ``bn_wd`` mean)."""
    return isinstance(module, NORM_TYPES)


def flatten_model(module: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``module`` (those with no children), in order."""
    children = list(module.children())
    if not children:
        return [module]
    return [leaf for child in children for leaf in flatten_model(child)]


def split_model_idx(model: nn.Module, idxs: Iterable[int]) -> list[nn.Module]:
    """Split the leaves of ``model`` into groups starting at the leaf indices ``idxs``."""
    layers = flatten_model(model)
    bounds = [0, *[i for i in idxs if i > 0], len(layers)]
    return [nn.Sequential(*layers[a:b]) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def split_model(model: nn.Module, splits: Iterable[nn.Module]) -> list[nn.Module]:
    """Split ``model`` into groups that begin at each module of ``splits`` (fastai v1 ``split``).

    ``splits`` are modules of ``model`` (e.g. ``model[0][6], model[1]``); each group holds the leaves
    from its split point to the next.
    """
    layers = flatten_model(model)
    starts = []
    for module in splits:
        first = flatten_model(module)[0]
        starts.append(next(i for i, layer in enumerate(layers) if layer is first))
    return split_model_idx(model, starts)


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` on every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)


def init_weights(module: nn.Module, fn: Callable) -> nn.Module:
    """Apply ``fn`` to the weight of every layer that is not a norm layer; zero their biases."""
    for m in module.modules():
        if is_norm(m):
            continue
        weight = getattr(m, "weight", None)
        if isinstance(weight, nn.Parameter) and list(m.children()) == []:
            fn(weight)
            bias = getattr(m, "bias", None)
            if isinstance(bias, nn.Parameter):
                nn.init.zeros_(bias)
    return module


def params_of(groups: Iterable[nn.Module]) -> tuple[list[list[nn.Parameter]], list[list[nn.Parameter]]]:
    """Each group's parameters split in two: (weights that get weight decay, norm params and biases).

    A parameter shared by two groups is listed once, in the first.
    """
    seen: set[int] = set()
    decay, no_decay = [], []
    for group in groups:
        d, nd = [], []
        for m in group.modules():
            for name, p in m.named_parameters(recurse=False):
                if id(p) in seen:
                    continue
                seen.add(id(p))
                (nd if is_norm(m) or name.endswith("bias") else d).append(p)
        decay.append(d)
        no_decay.append(nd)
    return decay, no_decay
