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

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from learnkit.data.sampler import mix_seed

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
        # one fused pass: x * scale / std - mean / std
        return torch.addcmul(-mean / std, x, scale / std), y

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


class Augment:
    """Random horizontal flip and a small zoom/shift, drawn per image, applied to a whole batch.

    The zoom is a zoom *in* by a factor in ``[1, max_zoom]`` with the window moved at most as far as
    it stays inside the image, so no border is ever invented. With ``masks=True`` the target (long,
    ``N x H x W``) goes through the same geometric transform with nearest-neighbour sampling.
    Random numbers come from a ``torch.Generator`` seeded from ``(seed, rank, epoch, batch index)``.

    Args:
        seed: the run's seed.
        flip: flip each image left-right with probability 1/2.
        max_zoom: 1.0 turns zoom and shift off (flips are then exact pixel copies).
        masks: transform ``y`` as a segmentation mask too.
        rank: the process's rank, so that ranks do not share augmentation draws.

    Example:
        >>> aug = Augment(seed=0)
        >>> aug.set_epoch(2, start_batch=0)  # the loader does this at each pass
        >>> x, y = aug(torch.rand(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    """

    train_only = True

    def __init__(
        self, seed: int = 0, flip: bool = True, max_zoom: float = 1.15, masks: bool = False, rank: int = 0
    ) -> None:
        if max_zoom < 1.0:
            raise ValueError(f"max_zoom must be >= 1, got {max_zoom}")
        self.seed, self.flip, self.max_zoom, self.masks, self.rank = seed, flip, max_zoom, masks, rank
        self.epoch, self.batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Start counting batches of ``epoch`` at ``start_batch`` (the loader calls this)."""
        self.epoch, self.batch = int(epoch), int(start_batch)

    def params(self, n: int, epoch: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The draws for one batch: ``(flips (bool), scales, shifts (n x 2))``, on the CPU."""
        gen = torch.Generator()
        gen.manual_seed(mix_seed(self.seed, self.rank, epoch, batch))
        flips = torch.rand(n, generator=gen) < 0.5
        if not self.flip:
            flips[:] = False
        scales = 1.0 / (1.0 + torch.rand(n, generator=gen) * (self.max_zoom - 1.0))
        shifts = (torch.rand(n, 2, generator=gen) * 2 - 1) * (1 - scales).unsqueeze(1)
        return flips, scales, shifts

    def __call__(self, x: torch.Tensor, y=None):
        flips, scales, shifts = self.params(x.shape[0], self.epoch, self.batch)
        self.batch += 1
        transform_y = self.masks and y is not None
        if self.max_zoom == 1.0:
            return _flip(x, flips), (_flip(y, flips) if transform_y else y)
        theta = torch.zeros(x.shape[0], 2, 3)
        theta[:, 0, 0] = torch.where(flips, -scales, scales)
        theta[:, 1, 1] = scales
        theta[:, :, 2] = shifts
        # non_blocking: a blocking copy to a GPU would wait for the previous batch's work first
        theta = theta.to(device=x.device, dtype=torch.float32, non_blocking=True)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if transform_y:
            warped = F.grid_sample(
                y.unsqueeze(1).float(), grid, mode="nearest", padding_mode="border", align_corners=False
            )
            y = warped.squeeze(1).round().to(y.dtype)
        return out.to(x.dtype) if x.is_floating_point() else out, y

    def __repr__(self) -> str:
        return f"Augment(seed={self.seed}, flip={self.flip}, max_zoom={self.max_zoom}, masks={self.masks})"


def _flip(t: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flip the rows of ``t`` chosen by ``flips`` along the last (width) axis."""
    mask = flips.to(t.device, non_blocking=True).view(-1, *([1] * (t.dim() - 1)))
    return torch.where(mask, t.flip(-1), t)
