"""fastai v1's data vocabulary: ``get_transforms`` and the normalisation statistics, free of torch.

``get_transforms(...)`` takes v1's parameters and returns, as v1 does, a ``(train, valid)`` pair;
here the train part is the :class:`~learnkit.data.aug_config.AugmentSettings` that learnkit's
batch augmentation applies (the same knobs under the same names: v1's defaults are the
``fastai`` preset) and the valid part is empty (v1's is a centre crop, which a square resize
makes a no-op). Pass the pair as ``ds_tfms=`` to ``ImageDataBunch.from_folder`` and friends.

The statistics are v1's ``(mean, std)`` pairs, for ``DataBunch.normalize``.

Example:
    >>> tfms = get_transforms(flip_vert=True, max_warp=0.0)
    >>> tfms[0].flip_vert, tfms[0].max_warp, tfms[1]
    (True, 0.0, [])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from learnkit.data.aug_config import PRESETS, AugmentSettings
from learnkit.errors import UsageError

__all__ = ["cifar_stats", "get_transforms", "imagenet_stats", "mnist_stats", "settings_from_ds_tfms"]

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
cifar_stats = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])
mnist_stats = ([0.15, 0.15, 0.15], [0.15, 0.15, 0.15])


def get_transforms(
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    xtra_tfms: Sequence[Any] | None = None,
) -> tuple[AugmentSettings, list]:
    """fastai v1's ``get_transforms``: ``(train settings, [])`` with v1's parameters and defaults.

    ``max_rotate``, ``max_zoom``, ``max_warp`` (each with probability ``p_affine``), ``max_lighting``
    (brightness and contrast, each with ``p_lighting``), ``do_flip`` (left-right with probability
    1/2) and ``flip_vert`` (with ``do_flip``: any of the 8 dihedral flips) mean what they mean in v1.
    ``xtra_tfms`` (v1's own transform functions) are not supported: a ``UsageError`` says so.
    """
    if xtra_tfms:
        raise UsageError(
            "get_transforms(xtra_tfms=...) is not supported: learnkit augments whole batches on the "
            "device with its own transforms (see docs/fastai.md)"
        )
    settings = AugmentSettings(
        flip=bool(do_flip),
        flip_vert=bool(do_flip and flip_vert),
        max_rotate=float(max_rotate or 0.0),
        max_zoom=float(max_zoom or 1.0),
        max_lighting=float(max_lighting or 0.0),
        max_warp=float(max_warp or 0.0),
        p_affine=float(p_affine),
        p_lighting=float(p_lighting),
    )
    return settings, []


def settings_from_ds_tfms(ds_tfms: Any) -> AugmentSettings:
    """The augmentation that ``ds_tfms`` stands for: ``get_transforms()``'s pair, its first item, an
    ``AugmentSettings``, or ``None`` (none at all, as v1's ``ds_tfms=None``)."""
    if ds_tfms is None:
        return PRESETS["none"]
    if isinstance(ds_tfms, AugmentSettings):
        return ds_tfms
    if isinstance(ds_tfms, (tuple, list)) and ds_tfms and isinstance(ds_tfms[0], AugmentSettings):
        return ds_tfms[0]
    if isinstance(ds_tfms, (tuple, list)) and all(not t for t in ds_tfms):
        return PRESETS["none"]
    raise UsageError(
        f"ds_tfms must come from get_transforms(...) (or be None), not {type(ds_tfms).__name__}: "
        "learnkit does not run fastai v1's transform functions"
    )


def stats_dict(stats: Any) -> dict[str, list[float]] | None:
    """v1's ``(mean, std)`` (lists or tensors) as learnkit's ``{"mean": [...], "std": [...]}``."""
    if stats is None:
        return None
    if isinstance(stats, dict):
        mean, std = stats["mean"], stats["std"]
    else:
        mean, std = stats
    mean = [float(v) for v in (mean.tolist() if hasattr(mean, "tolist") else mean)]
    std = [float(v) for v in (std.tolist() if hasattr(std, "tolist") else std)]
    if len(mean) != len(std) or not mean:
        raise UsageError(f"normalize needs (mean, std) with one value per channel, got {stats!r}")
    return {"mean": mean, "std": std}
