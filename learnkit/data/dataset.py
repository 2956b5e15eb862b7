"""``ImageDataset``: image files (and labels or masks), decoded once into RAM when they fit.

The bad-image rule: a data set checks every file when it is built. Unusable images (empty,
truncated, not an image, too large; for segmentation, also an unusable mask) are **skipped**, and
one ``SkippedImagesWarning`` says how many and names the first with its reason; ``paths`` lists
what was kept. A data set left with no usable image raises ``DataError``.

Caching (``cache=``): ``"ram"`` decodes and resizes every image at build time into one uint8
tensor, so no epoch decodes a file again (the check is that decode itself). ``"none"`` reads files
at each access; the build-time check then reads headers and the files' own checksums only, so a
truncated JPEG can still surface at load time as a ``DataError``. ``"auto"`` picks ``"ram"`` when
the decoded tensors fit in the memory available (:mod:`learnkit.data.memory`: ``MemAvailable`` and
a cgroup limit, less a headroom, shared by the run's processes); ``"ram"`` that cannot fit is
refused before anything is decoded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from learnkit.data.images import check_image, load_image, load_mask
from learnkit.data.shared_cache import SharedCache
from learnkit.errors import DataError, UsageError

CacheMode = Literal["auto", "ram", "none"]
CACHE_BUDGET = None
"""``cache="auto"``'s default budget: None, the memory available now (:mod:`learnkit.data.memory`)."""

NO_LABEL = -1
"""The target of an unlabelled item (a test set)."""


class SkippedImagesWarning(UserWarning):
    """Some images of a data set could not be read and were left out."""


def resolve_cache(cache: str, n_bytes: int, budget: int | None = CACHE_BUDGET, *, what: str = "") -> str:
    """``"ram"`` or ``"none"`` for a cache setting and the decoded size of the data set.

    ``budget``: the bytes the cache may take; None: :func:`learnkit.data.memory.cache_budget` (the
    available memory less a headroom, shared by the run's processes on this machine). ``auto``
    caches what fits; ``ram`` that cannot fit is a :class:`DataError` naming the sizes (before
    anything is decoded). ``what`` describes the images for that message (``"2,006 images at 2048
    px"``).
    """
    from learnkit.data.memory import HEADROOM, available_memory, cache_budget, cache_copies, gib

    if cache not in ("auto", "ram", "none"):
        raise UsageError(f"cache must be one of auto, ram, none; got {cache!r}")
    if cache == "none":
        return cache
    limit = cache_budget() if budget is None else budget
    if limit is None or n_bytes <= limit:
        return "ram"
    if cache == "auto":
        return "none"
    procs = cache_copies() if budget is None else 1
    each = f" in each of {procs} processes" if procs > 1 else ""
    have = available_memory() if budget is None else None
    room = f" ({gib(have)} available, {HEADROOM:.0%} kept free)" if have is not None else ""
    raise DataError(
        f"--cache ram: the decoded images{' (' + what + ')' if what else ''} take {gib(n_bytes)}{each}, "
        f"more than the {gib(limit)} a cache may use{room}; use --cache none or auto, or a smaller --size"
    )


def _map(fn: Callable, items: Sequence) -> list:
    """``fn`` over ``items`` in order; threads when it pays (Pillow decodes without the GIL)."""
    workers = min(8, os.cpu_count() or 1)
    if len(items) < 64 or workers == 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


class ImageDataset(Dataset):
    """Images (uint8 ``3 x size x size``) with class labels, masks, or no target.

    Args:
        paths: the image files.
        labels: a class index per image (classification), a list of class indices per image with
            ``n_classes`` (multi-label: targets are multi-hot float vectors), or ``None``.
        size: the side length every image is resized to.
        masks: a mask file per image (segmentation): items are then ``(image, long mask H x W)``.
        n_codes: the number of segmentation classes; mask values must be below it.
        cache: ``"auto"``, ``"ram"`` or ``"none"`` (see the module docstring).
        budget: the bytes the cache may take (None: the memory available, see :func:`resolve_cache`).

    Items are ``(x, y)`` with ``y`` a long scalar (the label, or ``NO_LABEL``) or a long mask.
    After the build, ``paths``, ``labels`` and ``mask_paths`` hold what was kept and ``skipped``
    the ``(path, reason)`` of what was not.

    Example:
        >>> ds = ImageDataset(["a.png", "b.png"], [0, 1], size=32)  # doctest: +SKIP
        >>> x, y = ds[0]; x.shape, x.dtype, int(y)
        (torch.Size([3, 32, 32]), torch.uint8, 0)
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Sequence[int] | Sequence[Sequence[int]] | None = None,
        size: int = 64,
        *,
        n_classes: int | None = None,
        masks: Sequence[str | Path] | None = None,
        n_codes: int | None = None,
        cache: CacheMode = "auto",
        budget: int | None = CACHE_BUDGET,
    ) -> None:
        self.size = int(size)
        if self.size < 1:
            raise UsageError(f"image size must be >= 1, got {size}")
        paths = [Path(p) for p in paths]
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        if masks is not None and len(masks) != len(paths):
            raise ValueError(f"{len(paths)} paths but {len(masks)} masks")
        if not paths:
            raise DataError("no images to load")
        self.n_codes = n_codes
        per_item = 3 * self.size**2 + (self.size**2 if masks is not None else 0)
        self.cache = resolve_cache(cache, per_item * len(paths), budget)
        mask_list = None if masks is None else [Path(m) for m in masks]
        keep = self._build(paths, mask_list)
        self.paths = [paths[i] for i in keep]
        self.mask_paths = None if mask_list is None else [mask_list[i] for i in keep]
        self.multi_label = n_classes is not None
        if self.multi_label:  # lists of class indices -> multi-hot float targets
            self.labels = None if labels is None else [sorted({int(c) for c in labels[i]}) for i in keep]
            self._y = torch.zeros(len(keep), n_classes)
            for row, classes in enumerate(self.labels or []):
                self._y[row, classes] = 1.0
        else:
            self.labels = None if labels is None else [int(labels[i]) for i in keep]
            self._y = torch.tensor(self.labels if self.labels is not None else [], dtype=torch.long)

    def _build(self, paths: list[Path], masks: list[Path] | None) -> list[int]:
        """Check (and with the RAM cache, decode) every item; return the indices kept."""
        n, size = len(paths), self.size
        ram = self.cache == "ram"
        # filled in place, so the peak memory is the cache itself, not a list of tensors plus a copy;
        # several processes of a run on this machine share one copy (learnkit.data.shared_cache)
        shared = SharedCache.open((n, 3, size, size)) if ram and masks is None else None
        if shared is not None:
            self._x = shared.tensor
        else:
            self._x = torch.empty(n, 3, size, size, dtype=torch.uint8) if ram else None
        self._m = torch.empty(n, size, size, dtype=torch.uint8) if ram and masks is not None else None

        def read(i: int) -> str | None:
            try:
                if ram:
                    self._x[i] = load_image(paths[i], size)
                    if masks is not None:
                        self._m[i] = load_mask(masks[i], size, self.n_codes)
                else:
                    check_image(paths[i], size)
                    if masks is not None:
                        check_image(masks[i], size)
            except DataError as exc:
                return str(exc)
            return None

        if shared is None:
            problems = _map(read, range(n))
        else:  # local rank 0 decodes, the others read its problems; every rank keeps the same
            problems = shared.publish(_map(read, range(n)) if shared.is_writer else [])
            if not isinstance(problems, list) or len(problems) != n:  # not this data set's: decode here
                self._x = torch.empty(n, 3, size, size, dtype=torch.uint8)
                problems = _map(read, range(n))
        keep = [i for i in range(n) if problems[i] is None]
        self.skipped = [(paths[i], problems[i]) for i in range(n) if problems[i] is not None]
        if not keep:
            raise DataError(f"no usable images among {n} (first problem: {self.skipped[0][1]})")
        if self.skipped:
            warnings.warn(
                f"skipped {len(self.skipped)} of {n} images that could not be read "
                f"(first: {self.skipped[0][1]})",
                SkippedImagesWarning,
                stacklevel=3,
            )
        # the cache keeps the rows of skipped files (unused) rather than being copied without them:
        # a copy would double the peak memory for the sake of a few rows
        self._rows = keep
        return keep

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self._rows[i]
        x = self._x[row] if self._x is not None else load_image(self.paths[i], self.size)
        if self.mask_paths is not None:
            m = (
                self._m[row]
                if self._m is not None
                else load_mask(self.mask_paths[i], self.size, self.n_codes)
            )
            return x, m.long()
        if self.labels is not None:
            return x, self._y[i]
        return x, torch.tensor(NO_LABEL)

    @property
    def cached(self) -> bool:
        """True when the decoded images live in RAM."""
        return self._x is not None

    def __repr__(self) -> str:
        kind = "labels" if self.labels is not None else "no targets"
        if self.mask_paths is not None:
            kind = "masks"
        return f"ImageDataset({len(self)} images, {kind}, size={self.size}, cache={self.cache!r})"
