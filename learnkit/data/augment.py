"""Batch transforms that run on the device: normalisation and train-time augmentation.

A transform is a callable ``tfm(x, y) -> (x, y)`` applied by ``DeviceDataLoader`` to whole batches
after they reach the device. Two optional attributes refine how loaders treat it:

- ``set_epoch(epoch, start_batch)``: called at the start of each pass, so a transform that draws
  random numbers can seed them from ``(seed, epoch, batch index)``;
- ``train_only = True``: augmentation, dropped from the loaders that must see the data as it is
  (valid, fix, single, test).

Randomness never touches the global RNG: each batch gets its own ``torch.Generator``, so
augmentation is reproducible whatever else the run does, and a resumed epoch sees the same flips
and zooms as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from learnkit.data import geometry
from learnkit.data.aug_config import DEFAULT_PRESET, PRESETS, AugmentConfig, AugmentSettings
from learnkit.data.sampler import mix_seed

__all__ = [
    "DEFAULT_PRESET",
    "IMAGENET_STATS",
    "PRESETS",
    "Augment",
    "AugmentConfig",
    "AugmentSettings",
    "Draws",
    "Normalize",
]

IMAGENET_STATS: dict[str, list[float]] = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
"""ImageNet channel mean and std (RGB, on the 0..1 scale): the default normalisation."""


class Normalize:
    """uint8 images to float on the 0..1 scale, then ``(x - mean) / std`` per channel.

    ``mean=None`` only rescales. Float input is taken as already on the 0..1 scale.

    Example:
        >>> x, y = Normalize([0.5] * 3, [0.5] * 3)(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8), None)
        >>> x.unique().tolist()
        [1.0]
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.mean = None if mean is None else torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = None if std is None else torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def from_stats(cls, norm_stats: dict | None) -> Normalize:
        """From a ``{"mean": [...], "std": [...]}`` record (``None``: rescale only)."""
        if norm_stats is None:
            return cls()
        return cls(norm_stats["mean"], norm_stats["std"])

    def _stats_on(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean.device != x.device:
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        return self.mean, self.std

    def __call__(self, x: torch.Tensor, y=None):
        is_bytes = x.dtype == torch.uint8
        x = x.float()  # a new tensor for uint8; float32 input is only read below
        if self.mean is None:
            return (x.div_(255.0) if is_bytes else x), y
        scale = 1.0 / 255.0 if is_bytes else 1.0
        mean, std = self._stats_on(x)
        # one fused pass: x * scale / std - mean / std; written over the float copy of a uint8 batch
        # (one allocation a batch, on the device after the transfer: no second batch-sized tensor)
        out = x if is_bytes and not x.requires_grad else None
        return torch.addcmul(-mean / std, x, scale / std, out=out), y

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: float images on the 0..1 scale (for showing them)."""
        if self.mean is None:
            return x.float()
        mean, std = self._stats_on(x)
        return x.float() * std + mean

    def __repr__(self) -> str:
        if self.mean is None:
            return "Normalize()"
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


@dataclass
class Draws:
    """One batch's random draws, on the CPU (see :meth:`Augment.params`)."""

    matrices: torch.Tensor  # n x 3 x 3 float64, output point -> input point
    flip_x: torch.Tensor  # the flips alone (exact pixel copies when nothing else moves)
    flip_y: torch.Tensor
    transpose: torch.Tensor
    brightness: torch.Tensor  # added in logit space (0 = unchanged)
    contrast: torch.Tensor  # multiplies in logit space (1 = unchanged)


class Augment:
    """Random flips, rotation, zoom, perspective warp and lighting, drawn per image, on whole batches.

    Images come in as uint8 (0..255) or float on the 0..1 scale and leave as float on the 0..1
    scale (``Normalize`` comes after). Geometry is one ``grid_sample`` per batch (reflection
    padding, as fastai); with ``masks=True`` the target (long, ``N x H x W``) goes through the same
    geometry with nearest-neighbour sampling, so classes never blend. Lighting is fastai's:
    brightness added and contrast multiplied in logit space. Random numbers come from a
    ``torch.Generator`` seeded from ``(seed, rank, epoch, batch index)`` only.

    Args:
        seed: the run's seed.
        flip, max_zoom: the ``light`` preset's knobs (kept for old callers); ignored with ``settings``.
        masks: transform ``y`` as a segmentation mask too.
        rank: the process's rank, so that ranks do not share augmentation draws.
        settings: what to apply (``AugmentConfig(...).settings()``).

    Example:
        >>> aug = Augment(seed=0, settings=AugmentConfig("fastai").settings())
        >>> aug.set_epoch(2, start_batch=0)  # the loader does this at each pass
        >>> x, y = aug(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    """

    train_only = True

    def __init__(
        self,
        seed: int = 0,
        flip: bool = True,
        max_zoom: float = 1.15,
        masks: bool = False,
        rank: int = 0,
        *,
        settings: AugmentSettings | None = None,
    ) -> None:
        if settings is None:
            if max_zoom < 1.0:
                raise ValueError(f"max_zoom must be >= 1, got {max_zoom}")
            settings = AugmentSettings(flip=flip, max_zoom=max_zoom, p_affine=1.0)
        self.settings, self.seed, self.masks, self.rank = settings, seed, masks, rank
        self.epoch, self.batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Start counting batches of ``epoch`` at ``start_batch`` (the loader calls this)."""
        self.epoch, self.batch = int(epoch), int(start_batch)

    def params(self, n: int, epoch: int, batch: int) -> Draws:
        """The draws for one batch of ``n`` images: a function of ``(seed, rank, epoch, batch)`` alone.

        Every draw is made whatever the settings, so switching one transform off leaves the others'
        draws unchanged.
        """
        s = self.settings
        gen = torch.Generator()
        gen.manual_seed(mix_seed(self.seed, self.rank, epoch, batch))

        def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=gen, dtype=torch.float64)

        def chance(p: float) -> torch.Tensor:
            return torch.rand(n, generator=gen) < p

        flip_x, flip_y, transpose = chance(0.5), chance(0.5), chance(0.5)
        if not s.flip:
            flip_x[:], flip_y[:], transpose[:] = False, False, False
        elif not s.flip_vert:
            flip_y[:], transpose[:] = False, False
        warp_on, warp_mag = chance(s.p_affine), uniform(-s.max_warp, s.max_warp, n, 4)
        rot_on, degrees = chance(s.p_affine), uniform(-s.max_rotate, s.max_rotate)
        zoom_on, scale = chance(s.p_affine), uniform(1.0, s.max_zoom)
        row_pct, col_pct = uniform(0.0, 1.0), uniform(0.0, 1.0)
        bright_on = chance(s.p_lighting)
        bright = uniform(0.5 * (1 - s.max_lighting), 0.5 * (1 + s.max_lighting))
        contrast_on = chance(s.p_lighting)
        # log-uniform in [1 - max_lighting, 1 / (1 - max_lighting)], as fastai's contrast
        log_c = math.log(1 - s.max_lighting) if s.max_lighting > 0 else 0.0
        contrast = torch.exp(uniform(log_c, -log_c))

        mats = geometry.flip_matrix(flip_x, flip_y, transpose)
        if s.max_rotate > 0:
            mats = mats @ geometry.rotation_matrix(torch.where(rot_on, degrees, 0.0))
        if s.max_zoom > 1:
            mats = mats @ geometry.zoom_matrix(torch.where(zoom_on, scale, 1.0), row_pct, col_pct)
        if s.max_warp > 0:
            mats = mats @ geometry.symmetric_warp_matrix(torch.where(warp_on.unsqueeze(1), warp_mag, 0.0))
        if s.max_lighting > 0:
            brightness = torch.logit(torch.where(bright_on, bright, 0.5))
            contrast = torch.where(contrast_on, contrast, 1.0)
        else:
            brightness, contrast = torch.zeros(n), torch.ones(n)
        return Draws(mats, flip_x, flip_y, transpose, brightness.float(), contrast.float())

    def __call__(self, x: torch.Tensor, y=None):
        s = self.settings
        draws = self.params(x.shape[0], self.epoch, self.batch)
        self.batch += 1
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        transform_y = self.masks and y is not None
        if s.geometric:
            x = geometry.warp(x.float(), draws.matrices)
            if transform_y:
                warped = geometry.warp(y.unsqueeze(1).float(), draws.matrices, mode="nearest")
                y = warped.squeeze(1).round().to(y.dtype)
        elif s.flip:  # flips alone are exact pixel copies
            x = _dihedral(x, draws)
            y = _dihedral(y, draws) if transform_y else y
        if s.max_lighting > 0:
            x = _lighting(x, draws.brightness, draws.contrast)
        return x, y

    def __repr__(self) -> str:
        return f"Augment(seed={self.seed}, settings={self.settings}, masks={self.masks})"


def _dihedral(t: torch.Tensor, draws: Draws) -> torch.Tensor:
    """The flips/transposes of ``draws`` on the last two axes of ``t``, image by image."""

    def where(chosen: torch.Tensor, changed: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not bool(chosen.any()):
            return t
        mask = chosen.to(t.device, non_blocking=True).view(-1, *([1] * (t.dim() - 1)))
        return torch.where(mask, changed, t)

    # the matrix is flip @ swap (output -> input): the flipped image, read transposed
    t = where(draws.flip_x, t.flip(-1), t)
    t = where(draws.flip_y, t.flip(-2), t)
    return where(draws.transpose, t.transpose(-1, -2), t)


def _lighting(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """fastai's brightness then contrast: ``sigmoid((logit(x) + brightness) * contrast)`` per image."""
    shape = (-1, *([1] * (x.dim() - 1)))
    b = brightness.to(x.device, non_blocking=True).view(shape)
    c = contrast.to(x.device, non_blocking=True).view(shape)
    return torch.sigmoid((torch.logit(x.clamp(1e-6, 1 - 1e-6)) + b) * c)
