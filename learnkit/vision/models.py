"""Models from a spec: the JSON-able recipe a checkpoint stores so that it can rebuild its model alone.

A spec is ``{"kind": "cnn" | "plain" | "unet", "arch": str, "n_out": int, "kwargs": {...}}``:

- ``cnn``: :func:`~learnkit.vision.cnn.create_cnn_model` (a zoo body up to its cut + a new head);
- ``plain``: the zoo builder's model as it is (for archs without a cut, like ``simple_cnn``);
- ``unet``: a DynamicUnet over a zoo encoder (:func:`~learnkit.vision.unet_learner.build_unet`).

It is also fastai v1's ``models`` namespace: ``models.resnet34`` is torchvision's model function
(see ``__getattr__`` at the end), which ``cnn_learner`` maps to the zoo arch of that name.

Example:
    >>> model, groups = build_model(model_spec_for("resnet18", 3))
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from learnkit import registry
from learnkit.errors import LearnkitError, UsageError
from learnkit.vision.cnn import build_cnn
from learnkit.vision.unet_learner import build_unet

# head options only a "cnn" model takes, with their defaults (see create_head)
HEAD_DEFAULTS: dict[str, Any] = {
    "cut": None,
    "lin_ftrs": None,
    "ps": 0.5,
    "concat_pool": True,
    "bn_final": False,
}


def _build_plain(
    arch: str, n_out: int, pretrained: str | Path | None, **kwargs: Any
) -> tuple[nn.Module, list]:
    model = registry.create(arch, n_out, pretrained=pretrained, **kwargs)
    return model, registry.get(arch).layer_groups(model)


def _build_cnn(arch: str, n_out: int, pretrained: str | Path | None, **kwargs: Any) -> tuple[nn.Module, list]:
    return build_cnn(arch, n_out, pretrained, **kwargs)


# kind -> builder(arch, n_out, pretrained, **kwargs) -> (model, layer groups).
MODEL_KINDS: dict[str, Callable[..., tuple[nn.Module, list]]] = {
    "cnn": _build_cnn,
    "plain": _build_plain,
    "unet": build_unet,
}


def model_spec_for(arch: str, n_out: int, **kwargs: Any) -> dict[str, Any]:
    """The spec for ``arch`` with ``n_out`` outputs: ``cnn`` when the arch (or ``cut``) gives a cut.

    ``None`` kwargs are dropped. Head options (``lin_ftrs``, ``ps``, ...) at their defaults are
    dropped for an arch without a cut; set to anything else they raise :class:`UsageError`.
    """
    entry = registry.get(arch)
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
        raise UsageError(f"n_out must be a positive integer, not {n_out!r}")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if entry.cut is not None or "cut" in kwargs:
        return {"kind": "cnn", "arch": arch, "n_out": n_out, "kwargs": kwargs}
    head = [k for k in kwargs if k in HEAD_DEFAULTS and kwargs[k] != HEAD_DEFAULTS[k]]
    if head:
        raise UsageError(f"arch '{arch}' has no cut for a new head, so it takes no {', '.join(head)}")
    plain = {k: v for k, v in kwargs.items() if k not in HEAD_DEFAULTS}
    return {"kind": "plain", "arch": arch, "n_out": n_out, "kwargs": plain}


def build_model(
    spec: dict[str, Any], pretrained: str | Path | None = None
) -> tuple[nn.Module, list[nn.Module]]:
    """Build the model a spec describes: ``(model, layer_groups)``.

    Args:
        spec: see the module docstring; ``kwargs`` go to the kind's builder.
        pretrained: a local state-dict file (not part of the spec: a checkpoint holds the weights).

    The layer groups come from the zoo entry's split (one group, the whole model, when it has
    none) and hold every parameter exactly once. An unknown arch or kind raises :class:`UsageError`.
    """
    if not isinstance(spec, dict) or not {"kind", "arch", "n_out"} <= set(spec):
        raise UsageError(f"a model spec needs kind, arch and n_out, not {spec!r}")
    kind, arch, n_out, kwargs = spec["kind"], spec["arch"], spec["n_out"], spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UsageError(f"a model spec's kwargs must be a mapping, not {kwargs!r}")
    builder = MODEL_KINDS.get(kind)
    if builder is None:
        raise UsageError(f"unknown model kind {kind!r} (known: {', '.join(sorted(MODEL_KINDS))})")
    model, groups = builder(arch, n_out, pretrained, **kwargs)
    check_layer_groups(model, groups, arch)
    return model, groups


def check_layer_groups(model: nn.Module, groups: list[nn.Module], arch: str = "model") -> None:
    """Raise :class:`LearnkitError` when ``groups`` leave a parameter of ``model`` out or hold one twice
    (the arch's split is at fault, not the user: exit code 1); the message names the parameters."""
    from learnkit.layers import check_layer_groups as check

    try:
        check(model, groups, f"arch '{arch}': its layer-group split")
    except UsageError as exc:
        raise LearnkitError(str(exc)) from None


def __getattr__(name: str) -> Any:
    """fastai v1's ``models`` namespace: ``models.resnet34`` and the other torchvision model
    functions (``fastai.vision.models`` re-exports torchvision's), for ``cnn_learner(data,
    models.resnet34)``. They are never called with weights: :func:`cnn_learner` maps them to the
    zoo's arch of the same name."""
    import torchvision.models as tv_models

    if not name.startswith("_") and hasattr(tv_models, name):
        return getattr(tv_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
