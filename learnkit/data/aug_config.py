"""Augmentation settings, free of torch: presets, fastai's knobs, and the config a run holds.

``AugmentConfig`` is what a RunConfig keeps (``--aug`` and the knob options); ``settings()``
resolves it to the concrete ``AugmentSettings`` that :class:`learnkit.data.augment.Augment`
applies. The command line imports this module without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from learnkit.errors import UsageError


@dataclass(frozen=True)
class AugmentSettings:
    """Concrete train-time augmentation, named as fastai v1's ``get_transforms`` names it.

    Each of rotate, zoom and warp is applied to an image with probability ``p_affine``, brightness
    and contrast each with ``p_lighting``; a flip (left-right, or one of the 8 dihedral
    symmetries with ``flip_vert``) with probability 1/2 / 7/8.
    """

    flip: bool = True  # flip left-right with probability 1/2
    flip_vert: bool = False  # with flip: any of the 8 flips/rotations by 90 degrees (fastai's dihedral)
    max_rotate: float = 0.0  # rotate by up to this many degrees either way
    max_zoom: float = 1.0  # zoom in by a factor in [1, max_zoom] on a random window
    max_lighting: float = 0.0  # brightness and contrast change of up to this much
    max_warp: float = 0.0  # perspective warp: corners moved by up to this share of the half-size
    p_affine: float = 0.75  # probability of each of rotate, zoom and warp
    p_lighting: float = 0.75  # probability of each of brightness and contrast

    def __post_init__(self) -> None:
        if self.max_zoom < 1.0:
            raise UsageError(f"max_zoom must be >= 1, got {self.max_zoom}")
        for name in ("max_rotate", "max_lighting", "max_warp"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_lighting >= 1:
            raise UsageError(f"max_lighting must be < 1, got {self.max_lighting}")
        for name in ("p_affine", "p_lighting"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)}")

    @property
    def geometric(self) -> bool:
        """True when some transform moves pixels by other than a flip (needs resampling)."""
        return self.max_rotate > 0 or self.max_zoom > 1 or self.max_warp > 0

    @property
    def is_identity(self) -> bool:
        """True when nothing changes the images (no augmentation transform is needed)."""
        return not (self.flip or self.geometric or self.max_lighting > 0)


PRESETS: dict[str, AugmentSettings] = {
    "none": AugmentSettings(flip=False),
    # left-right flips and a zoom of up to 1.15 on every image (learnkit's former default)
    "light": AugmentSettings(flip=True, max_zoom=1.15, p_affine=1.0),
    # fastai v1 get_transforms() defaults (fastai/vision/transform.py)
    "fastai": AugmentSettings(
        flip=True,
        max_rotate=10.0,
        max_zoom=1.1,
        max_lighting=0.2,
        max_warp=0.2,
        p_affine=0.75,
        p_lighting=0.75,
    ),
}
DEFAULT_PRESET = "none"
"""The preset a training command uses unless told: chosen by measurement (bench/README.md)."""


@dataclass(frozen=True)
class AugmentConfig:
    """A preset and the knobs that override it: what ``--aug`` and ``--max-rotate`` ... hold.

    ``None`` for a knob means the preset's value. :meth:`settings` resolves it.

    Example:
        >>> AugmentConfig("fastai", max_rotate=0).settings().max_rotate
        0.0
    """

    preset: str = DEFAULT_PRESET  # none, light or fastai
    flip: bool | None = None
    flip_vert: bool | None = None
    max_rotate: float | None = None
    max_zoom: float | None = None
    max_lighting: float | None = None
    max_warp: float | None = None

    def settings(self) -> AugmentSettings:
        """The preset with the knobs that are set put over it (a UsageError for a bad value)."""
        if self.preset not in PRESETS:
            raise UsageError(f"unknown augmentation preset {self.preset!r}: use {', '.join(PRESETS)}")
        knobs = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "preset"}
        knobs = {k: _typed(k, v) for k, v in knobs.items() if v is not None}
        if knobs.get("flip_vert"):
            knobs.setdefault("flip", True)
        return replace(PRESETS[self.preset], **knobs)


def _typed(name: str, value: object) -> bool | float:
    return bool(value) if name.startswith("flip") else float(value)
