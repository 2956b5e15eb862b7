"""The jobs of ``learnkit zoo list`` and ``learnkit zoo show``: what the registry holds, as plain data.

Listing reads each arch's ``meta`` (no model is built, no torch imported: ``zoo list`` is instant).
Counting builds models on torch's ``meta`` device (shapes without memory or initialisation); a
builder that cannot run there is built for real.

Example:
    >>> from learnkit.jobs.zoo import list_archs, show_arch
    >>> [row["name"] for row in list_archs("resnet*")]  # doctest: +SKIP
    ['resnet18', 'resnet34', 'resnet50']
    >>> len(show_arch("resnet18")["groups"])  # body groups + the new head  # doctest: +SKIP
    3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from learnkit import registry

LIST_N_OUT = 1000  # zoo list counts parameters as the zoo's meta does: with 1000 outputs


def _on_meta(build: Callable[[], Any]) -> Any:
    """``build()`` on the meta device when it can run there, else on the CPU."""
    import torch

    try:
        with torch.device("meta"):
            return build()
    except Exception:  # a builder that computes on real values (a dummy pass, a loaded file...)
        return build()


def _count(model: Any) -> int | None:
    """The model's parameter count; None while some are uninitialised (lazy layers)."""
    try:
        return sum(p.numel() for p in model.parameters())
    except ValueError:
        return None


def describe_arch(name: str, *, build: bool = False) -> dict[str, Any]:
    """One row of ``zoo list``: name, params (with 1000 outputs), layer groups, source, description.

    ``params`` and ``groups`` come from the arch's ``meta`` (the built-ins declare both, checked
    against real builds by the zoo tests), so listing builds no model and imports no torch. With
    ``build`` (or for a value the meta lacks, shown as None otherwise) the model is built on the
    meta device to count them.
    """
    entry = registry.get(name)
    params, groups = entry.meta.get("params"), entry.meta.get("groups")
    if build:
        try:
            model = _on_meta(lambda: entry.builder(LIST_N_OUT))
            groups = len(entry.layer_groups(model))
            params = _count(model) if _count(model) is not None else params
        except Exception:  # listing never fails because of one arch
            pass
    return {
        "name": name,
        "params": params,
        "groups": groups,
        "source": entry.source,
        "description": entry.description,
    }


def list_archs(pattern: str = "*", *, build: bool = False) -> list[dict[str, Any]]:
    """A :func:`describe_arch` row for every registered arch matching the fnmatch ``pattern``; a
    pattern into an extra's family that is not installed (``timm/*`` without timm) is a UsageError
    saying what to install."""
    rows = [describe_arch(name, build=build) for name in registry.names(pattern)]
    missing = None if rows else registry.missing_extra(pattern)
    if missing:
        from learnkit.errors import UsageError

        raise UsageError(missing)
    return rows


def show_arch(name: str, n_out: int = 10, unet: bool = False) -> dict[str, Any]:
    """The layer groups of ``name`` as a Learner gets them, layer by layer.

    The model is built from its spec as ``cnn_learner`` builds it (a new head of ``n_out``
    outputs after the cut; the arch as it is when it has none), or with ``unet`` as
    ``unet_learner`` does; the groups are the ones the optimizer receives, in order.

    Returns:
        ``name``, ``source``, ``description``, ``min_size``, ``kind``, ``n_out``, ``params`` and
        ``groups``: one dict per group (``group``, ``params``, ``layers``: one dict per leaf layer
        with its ``name`` in the model, ``layer`` type and own ``params``).
    """
    entry = registry.get(name)  # an unknown name fails here, before torch is imported

    from learnkit.layers import flatten_model
    from learnkit.vision.models import build_model, model_spec_for
    from learnkit.vision.unet_learner import unet_spec_for

    spec = unet_spec_for(name, n_out) if unet else model_spec_for(name, n_out)
    model, groups = _on_meta(lambda: build_model(spec))
    names = {id(m): n for n, m in model.named_modules()}
    shown = []
    for i, group in enumerate(groups):
        layers = [
            {"name": names.get(id(m), ""), "layer": type(m).__name__, "params": _count_own(m)}
            for m in flatten_model(group)
        ]
        shown.append({"group": i, "params": _count(group), "layers": layers})
    return {
        "name": name,
        "source": entry.source,
        "description": entry.description,
        "min_size": entry.min_size,
        "kind": spec["kind"],
        "n_out": n_out,
        "params": _count(model),
        "groups": shown,
    }


def _count_own(module: Any) -> int | None:
    try:
        return sum(p.numel() for p in module.parameters(recurse=False))
    except ValueError:
        return None
