"""An epoch-seeded sampler: the order of epoch ``e`` depends only on ``(seed, e)``.

This is what makes a resumed run exact: whatever happened before, ``set_epoch(e)`` gives the same
permutation, and ``set_epoch(e, skip=k)`` gives its tail after ``k`` samples without touching the
data. Over several processes each rank takes a strided share of the permutation, padded (as
``torch.utils.data.DistributedSampler`` does) so that every rank gets the same count.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers, e.g. ``mix_seed(seed, epoch, batch)``.

    Unlike ``seed + epoch`` this never makes ``(seed, epoch)`` and ``(seed + 1, epoch - 1)`` collide.

    Example:
        >>> mix_seed(0, 1) != mix_seed(1, 0)
        True
    """
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class EpochSampler(Sampler[int]):
    """Indices ``0 .. n-1`` in an order fixed by ``(seed, epoch)``, optionally sharded over ranks.

    Args:
        n: the data set's length.
        shuffle: a seeded permutation per epoch (else ``0 .. n-1`` in order).
        seed: shared by every rank, so that the ranks split one permutation.
        rank, world_size: this process's share: indices ``rank, rank + world_size, ...`` of the
            epoch's order.
        drop_last: drop the tail that does not divide evenly over the ranks instead of padding.
        pad: with ``world_size > 1`` and not ``drop_last``, repeat the first indices so that every
            rank gets ``ceil(n / world_size)`` (needed for training, where ranks step together).
            ``pad=False`` gives uneven shards with no duplicates (right for evaluation).

    Call ``set_epoch(epoch)`` before each epoch (``DeviceDataLoader`` does it for you); without it,
    every pass repeats the same order.

    Example:
        >>> s = EpochSampler(6, seed=1)
        >>> s.set_epoch(3)
        >>> full = list(s)
        >>> s.set_epoch(3, skip=4)
        >>> list(s) == full[4:]
        True
    """

    def __init__(
        self,
        n: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        *,
        pad: bool = True,
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.drop_last, self.pad = rank, world_size, drop_last, pad
        self.epoch, self.skip = 0, 0
        if drop_last:
            self.num_samples = n // world_size
        elif pad:
            self.num_samples = math.ceil(n / world_size)
        else:
            self.num_samples = len(range(rank, n, world_size))

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Use the order of ``epoch`` from now on, leaving out its first ``skip`` indices."""
        if skip < 0:
            raise ValueError(f"skip must be >= 0, got {skip}")
        self.epoch, self.skip = int(epoch), int(skip)

    def epoch_indices(self) -> list[int]:
        """This rank's whole share of the current epoch (``skip`` not applied)."""
        if self.shuffle:
            gen = torch.Generator()
            gen.manual_seed(mix_seed(self.seed, self.epoch))
            order = torch.randperm(self.n, generator=gen).tolist()
        else:
            order = list(range(self.n))
        if self.drop_last:
            order = order[: self.num_samples * self.world_size]
        elif self.pad and order:
            total = math.ceil(self.n / self.world_size) * self.world_size
            repeats = math.ceil(total / len(order))
            order = (order * repeats)[:total]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)

    def __repr__(self) -> str:
        return (
            f"EpochSampler(n={self.n}, shuffle={self.shuffle}, seed={self.seed}, rank={self.rank}, "
            f"world_size={self.world_size}, epoch={self.epoch}, skip={self.skip})"
        )
