"""The U-Net's spec and builder: a :class:`~learnkit.vision.unet.DynamicUnet` over a zoo encoder.

``unet_learner`` (which puts it in a Learner) lives in :mod:`learnkit.vision.learners`.

The encoder is the arch's body up to its cut (as ``cnn_learner`` cuts it); the layer groups are the
zoo's body groups, then the whole decoder. The model's spec has kind ``"unet"``, so a checkpoint
rebuilds it alone through :func:`learnkit.vision.models.build_model`.

Example:
    >>> data = SegmentationDataBunch.from_folder(resolve_data("sample:shapes-seg"))  # doctest: +SKIP
    >>> learn = unet_learner(data, "resnet18", metrics=segmentation_metrics())  # doctest: +SKIP
    >>> learn.fit_one_cycle(3, 1e-3)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from learnkit import registry
from learnkit.errors import UsageError
from learnkit.vision.cnn import _keys_outside, _within, create_body
from learnkit.vision.unet import DynamicUnet, check_norm_type

# the U-Net's own options, with their defaults (the rest of a spec's kwargs go to the zoo builder)
UNET_DEFAULTS: dict[str, Any] = {
    "cut": None,
    "img_size": None,
    "blur": False,
    "blur_final": True,
    "self_attention": False,
    "y_range": None,
    "last_cross": True,
    "bottle": False,
    "norm_type": None,
}


def unet_spec_for(arch: str, n_out: int, **kwargs: Any) -> dict[str, Any]:
    """The ``"unet"`` model spec for ``arch`` with ``n_out`` outputs (options at their defaults dropped).

    Example:
        >>> unet_spec_for("resnet18", 4, self_attention=True)  # doctest: +SKIP
        {'kind': 'unet', 'arch': 'resnet18', 'n_out': 4, 'kwargs': {'self_attention': True}}
    """
    registry.get(arch)  # an unknown arch fails here, with close names
    if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
        raise UsageError(f"n_out must be a positive integer, not {n_out!r}")
    if kwargs.get("y_range") is not None:
        kwargs["y_range"] = _check_y_range(kwargs["y_range"])
    if "norm_type" in kwargs:
        kwargs["norm_type"] = check_norm_type(kwargs["norm_type"])
    kept = {
        k: v
        for k, v in kwargs.items()
        if v is not None and not (k in UNET_DEFAULTS and v == UNET_DEFAULTS[k])
    }
    return {"kind": "unet", "arch": arch, "n_out": n_out, "kwargs": kept}


def encoder_cut(arch: str, cut: int | Callable[[nn.Module], nn.Module] | None = None) -> Any:
    """The cut that makes ``arch``'s encoder: ``cut`` if given, else the zoo's (its ``meta["unet_cut"]``,
    its ``cut``, or its ``meta["encoder_cut"]`` for an arch that keeps its own head as a classifier);
    UsageError if none."""
    entry = registry.get(arch)
    if cut is None:
        cut = entry.meta.get("unet_cut", entry.cut)
    if cut is None:
        cut = entry.meta.get("encoder_cut")
    if cut is None:
        raise UsageError(f"arch '{arch}' has no cut, so it cannot serve as a U-Net encoder; give cut=")
    return cut


def build_unet(
    arch: str,
    n_out: int,
    pretrained: str | Path | None = None,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    img_size: int | Sequence[int] | None = None,
    blur: bool = False,
    blur_final: bool = True,
    self_attention: bool = False,
    y_range: Sequence[float] | None = None,
    last_cross: bool = True,
    bottle: bool = False,
    norm_type: str | None = None,
    **arch_kwargs: Any,
) -> tuple[DynamicUnet, list[nn.Module]]:
    """A :class:`DynamicUnet` over ``arch``'s body, and its layer groups (body groups + decoder).

    This is the ``"unet"`` builder of :data:`learnkit.vision.models.MODEL_KINDS`.

    Args:
        arch: a zoo name with a cut, or any zoo name with ``cut`` given.
        n_out: output channels (the classes of the masks).
        pretrained: a local state-dict file for the whole arch; the keys of its dropped head are
            ignored, any other key that does not fit raises ``CheckpointError``.
        cut: overrides the zoo's cut (an index into the model's children, or ``cut(model) -> body``).
        img_size: side (or ``(h, w)``) of the dummy image that finds the skips (default
            ``max(128, the arch's min_size)``).
        arch_kwargs: passed to the zoo builder.
        The others: see :class:`~learnkit.vision.unet.DynamicUnet`.
    """
    entry = registry.get(arch)
    cut = encoder_cut(arch, cut)
    full = registry.create(arch, n_out, **arch_kwargs)
    before_cut = full.state_dict(keep_vars=True)  # a cut may drop the head from ``full`` (timm)
    encoder = create_body(full, cut)
    pretrained = registry.pretrained_file(entry, pretrained)
    if pretrained is not None:
        from learnkit.weights import load_weights, read_state_dict

        skip = _keys_outside(before_cut, encoder)
        load_weights(full, read_state_dict(pretrained), where=str(pretrained), skip=skip)
    size = img_size if img_size is not None else max(128, entry.min_size)
    unet = DynamicUnet(
        encoder,
        n_out,
        img_size=size if isinstance(size, int) else tuple(size),
        blur=blur,
        blur_final=blur_final,
        self_attention=self_attention,
        y_range=_check_y_range(y_range) if y_range is not None else None,
        last_cross=last_cross,
        bottle=bottle,
        norm_type=norm_type,
    )
    encoder_ids = {id(m) for m in encoder.modules()} | {id(p) for p in encoder.parameters()}
    body_groups = [
        nn.Sequential(*g) for g in (_within(group, encoder_ids) for group in entry.layer_groups(full)) if g
    ]
    return unet, [*(body_groups or [encoder]), nn.Sequential(*unet.decoder())]


def _check_y_range(y_range: Sequence[float]) -> list[float]:
    try:
        low, high = (float(v) for v in y_range)
    except (TypeError, ValueError):
        raise UsageError(f"y_range must be two numbers (low, high), not {y_range!r}") from None
    if not low < high:
        raise UsageError(f"y_range must rise: {low} is not below {high}")
    return [low, high]
