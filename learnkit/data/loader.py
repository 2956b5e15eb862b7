"""``DeviceDataLoader``: a torch ``DataLoader`` whose batches arrive on the device, transformed.

Its position is ``(epoch, start_batch)``. ``set_epoch(e, k)`` moves there: the sampler gets the
epoch (an ``EpochSampler`` also gets the skip, so the ``k`` skipped batches are never loaded), and
each transform with a ``set_epoch`` learns where counting starts. A full pass then moves the
position to ``(e + 1, 0)``, so a loop that never calls ``set_epoch`` still sees a new order and new
augmentation each epoch; a pass stopped early leaves the position where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader

from learnkit.data.sampler import EpochSampler
from learnkit.errors import DataError

Batch = tuple  # (x, y)
Transform = Callable[..., tuple]


def to_device(obj, device: torch.device):
    """Tensors in ``obj`` (a tensor, or lists/tuples/dicts of them) moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def _last_line(message: str) -> str:
    """The error's own one-line message, out of a DataLoader worker's 'Caught ... Traceback' text."""
    lines = message.strip().splitlines()
    if len(lines) <= 1:
        return message
    return lines[-1].split("DataError: ", 1)[-1]


class DeviceDataLoader:
    """Wraps ``dl``: yields ``(x, y)`` moved to ``device``, then passed through each of ``tfms``.

    Args:
        dl: a torch ``DataLoader`` yielding ``(x, y)`` batches.
        device: where batches go (``non_blocking``: pin memory in ``dl`` to overlap the copy).
        tfms: callables ``tfm(x, y) -> (x, y)`` applied in order on the device.

    ``len()`` is the number of batches still to come in the current epoch (all of them unless
    ``set_epoch`` was given a ``start_batch``).

    Example:
        >>> ddl = DeviceDataLoader(DataLoader(ds, batch_size=8), "cpu", [Normalize()])  # doctest: +SKIP
        >>> ddl.set_epoch(3, start_batch=2)  # resume: epoch 3 from its third batch
    """

    def __init__(self, dl: DataLoader, device: torch.device | str, tfms: Sequence[Transform] = ()) -> None:
        self.dl = dl
        self.device = torch.device(device)
        self.tfms = list(tfms)
        self.epoch, self.start_batch = 0, 0

    @property
    def dataset(self):
        """The wrapped loader's data set."""
        return self.dl.dataset

    @property
    def batch_size(self) -> int | None:
        """Items per batch (``None`` when the loader does not batch)."""
        if self.dl.batch_size is not None:
            return self.dl.batch_size
        return getattr(self.dl.batch_sampler, "batch_size", None)

    @property
    def sampler(self):
        """The sampler that orders the items (inside the batch sampler when there is one)."""
        batch_sampler = self.dl.batch_sampler
        return getattr(batch_sampler, "sampler", None) if batch_sampler is not None else self.dl.sampler

    def _skips_in_sampler(self) -> bool:
        """True when skipped batches can be left out by the sampler itself (no loading at all)."""
        return isinstance(self.sampler, EpochSampler) and type(self.dl.batch_sampler) is BatchSampler

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Go to batch ``start_batch`` of ``epoch``: its order and augmentation, whatever came before."""
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.epoch, self.start_batch = int(epoch), int(start_batch)
        sampler = self.sampler
        if self._skips_in_sampler():
            sampler.set_epoch(self.epoch, skip=self.start_batch * self.batch_size)
        elif hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)

    def _batches(self) -> Iterator:
        """The wrapped loader's batches from ``start_batch`` on, skipping without loading if possible."""
        if self.start_batch == 0 or self._skips_in_sampler():
            return iter(self.dl)
        dl = self.dl
        if dl.batch_sampler is None:  # no index batches to slice: load and drop
            it = iter(dl)
            for _ in range(self.start_batch):
                next(it, None)
            return it
        rest = list(dl.batch_sampler)[self.start_batch :]
        return iter(
            DataLoader(
                dl.dataset,
                batch_sampler=rest,
                num_workers=dl.num_workers,
                collate_fn=dl.collate_fn,
                pin_memory=dl.pin_memory,
                timeout=dl.timeout,
                worker_init_fn=dl.worker_init_fn,
                multiprocessing_context=dl.multiprocessing_context,
                generator=dl.generator,
            )
        )

    def __iter__(self) -> Iterator[Batch]:
        for tfm in self.tfms:
            if hasattr(tfm, "set_epoch"):
                tfm.set_epoch(self.epoch, self.start_batch)
        try:
            for batch in self._batches():
                x, y = to_device(batch, self.device)
                for tfm in self.tfms:
                    x, y = tfm(x, y)
                yield x, y
        except DataError as exc:  # from a worker, the message carries the worker's traceback
            raise DataError(_last_line(str(exc))) from None
        self.set_epoch(self.epoch + 1, 0)

    def __len__(self) -> int:
        if self._skips_in_sampler():
            return len(self.dl)
        return max(0, len(self.dl) - self.start_batch)

    def __repr__(self) -> str:
        return (
            f"DeviceDataLoader({len(self.dataset)} items, batch_size={self.batch_size}, "
            f"device={self.device}, tfms={self.tfms})"
        )
