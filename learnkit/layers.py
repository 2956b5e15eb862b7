"""Small helpers over modules: which layers are norm layers, flattening, freezing, initialisation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

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


class ParameterModule(nn.Module):
    """Holds a parameter that a module owns directly (not through a child), so it can join a group."""

    def __init__(self, p: nn.Parameter):
        super().__init__()
        self.val = p

    def forward(self, x: Any) -> Any:
        return x


def children_and_parameters(module: nn.Module) -> list[nn.Module]:
    """The children of ``module``, then one :class:`ParameterModule` per parameter it owns directly."""
    children = list(module.children())
    in_children = {id(p) for child in children for p in child.parameters()}
    own = [p for p in module.parameters(recurse=False) if id(p) not in in_children]
    return children + [ParameterModule(p) for p in own]


def flatten_model(module: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``module`` in order, with its direct parameters wrapped as leaves too
    (fastai v1's ``flatten_model``), so that the leaves hold every parameter."""
    if not list(module.children()):
        return [module]
    return [leaf for child in children_and_parameters(module) for leaf in flatten_model(child)]


def split_model_idx(model: nn.Module, idxs: Iterable[int]) -> list[nn.Module]:
    """Split the leaves of ``model`` into groups starting at the leaf indices ``idxs``.

    A group starts at 0 and the last ends at the last leaf, whether ``idxs`` says so or not.
    """
    layers = flatten_model(model)
    idxs = list(idxs)
    if not idxs or idxs[0] != 0:
        idxs = [0, *idxs]
    if idxs[-1] != len(layers):
        idxs.append(len(layers))
    return [nn.Sequential(*layers[a:b]) for a, b in zip(idxs[:-1], idxs[1:])]


def first_layer(module: nn.Module) -> nn.Module:
    """The first leaf of ``module``."""
    return flatten_model(module)[0]


def split_model(model: nn.Module, splits: Any) -> list[nn.Module]:
    """Layer groups of ``model`` from ``splits`` (fastai v1's ``split_model``).

    ``splits`` is one module or several, each marking where a group *starts*: the first group runs
    from the model's first leaf to the leaf before the first mark, the last from the last mark to
    the end, so the groups hold every parameter. ``splits`` may instead be a list of groups, each a
    list of modules (``[[m.conv1, m.bn1], [m.fc]]``): those are the groups, as given.
    """
    from learnkit.core import listify
    from learnkit.errors import UsageError

    splits = listify(splits) if not isinstance(splits, nn.Module) else [splits]
    if not splits:
        raise UsageError("split needs at least one module")
    if isinstance(splits[0], nn.Module):
        layers = flatten_model(model)
        positions = {id(layer): i for i, layer in enumerate(layers)}
        idxs = []
        for module in splits:
            if not isinstance(module, nn.Module) or id(first_layer(module)) not in positions:
                raise UsageError(f"split point {type(module).__name__} is not a module of the model")
            idxs.append(positions[id(first_layer(module))])
        return split_model_idx(model, idxs)
    return [nn.Sequential(*listify(group)) for group in splits]


def check_layer_groups(model: nn.Module, groups: Sequence[nn.Module], what: str = "the split") -> None:
    """Raise :class:`~learnkit.errors.UsageError` unless every parameter of ``model`` is in exactly
    one of ``groups``; the message names the parameters left out, in two groups or not the model's."""
    from learnkit.errors import UsageError

    count: dict[int, int] = {}
    for group in groups:
        for p in group.parameters():
            count[id(p)] = count.get(id(p), 0) + 1
    names = {id(p): n for n, p in model.named_parameters()}
    problems = []
    left_out = [n for i, n in names.items() if i not in count]
    twice = [names[i] for i, c in count.items() if c > 1 and i in names]
    foreign = sum(1 for i in count if i not in names)
    if left_out:
        problems.append(f"{len(left_out)} left out ({_some(left_out)})")
    if twice:
        problems.append(f"{len(twice)} in two groups or more ({_some(twice)})")
    if foreign:
        problems.append(f"{foreign} not in the model")
    if problems:
        raise UsageError(
            f"{what} must put every parameter in exactly one layer group: " + "; ".join(problems)
        )


def _some(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Set ``requires_grad`` on every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)


def init_weights(module: nn.Module, fn: Callable) -> nn.Module:
    """Apply ``fn`` to the weight of every layer that is not a norm layer; zero their biases.

    A frozen layer (its first parameter does not require a gradient) is skipped, as fastai v1's
    ``apply_init`` skips it: initialising a frozen pretrained body would wipe weights that never train.
    """
    for m in module.modules():
        first = next(m.parameters(), None)
        if is_norm(m) or first is None or not first.requires_grad:
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


def input_channels(model: nn.Module) -> int | None:
    """The channels the model's first convolution takes (its stem), or None without one."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return None
