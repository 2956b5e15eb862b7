"""One RAM cache for the processes of a run on one machine: local rank 0 decodes into a file in
``/dev/shm`` mapped shared, the other local ranks map the same file, so N processes hold one copy
(the pages are counted once, in the shared memory of the machine).

Used by :class:`~learnkit.data.dataset.ImageDataset` under torchrun (an initialised process group
of more than one process on this machine); anywhere else (or where ``/dev/shm`` cannot be used)
each process decodes its own copy. The file is removed as soon as every local rank has mapped it
(the mapping stays valid), so nothing is left behind, even by a killed run.

Example (inside the data set's build)::

    shared = SharedCache.open(key, (n, 3, size, size))   # None: cache privately
    if shared is not None and shared.is_writer:
        ...decode into shared.tensor..., shared.publish(problems)
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

SHM = Path("/dev/shm")
_counter = {"n": 0}


def _local_group() -> tuple[int, int] | None:
    """``(local rank, local world size)`` under an initialised group of several local processes."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        local, size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
    except (KeyError, ValueError):
        return None
    return (local, size) if size > 1 else None


def sharing_possible() -> bool:
    """Whether a run of several local processes would share one cache (``/dev/shm`` usable)."""
    return SHM.is_dir() and os.access(SHM, os.W_OK)


class SharedCache:
    """A uint8 tensor backed by a shared ``/dev/shm`` file, written by local rank 0."""

    def __init__(self, tensor: torch.Tensor, file: Path, is_writer: bool) -> None:
        self.tensor, self.file, self.is_writer = tensor, file, is_writer

    @classmethod
    def open(cls, shape: tuple[int, ...]) -> SharedCache | None:
        """The shared tensor of the next cache this process builds (every rank builds its data
        sets in the same order, so the n-th is the same data set on every rank); None when the
        run is not several local processes or ``/dev/shm`` cannot be used."""
        group = _local_group()
        if group is None or not sharing_possible():
            return None
        _counter["n"] += 1
        run = os.environ.get("TORCHELASTIC_RUN_ID") or os.environ.get("MASTER_PORT", "run")
        node = os.environ.get("GROUP_RANK", "0")
        file = SHM / f"learnkit-cache-{run}-{node}-{os.getppid()}-{_counter['n']}"
        numel = 1
        for d in shape:
            numel *= int(d)
        writer = group[0] == 0
        if writer:
            file.unlink(missing_ok=True)
        _barrier()
        if not writer:
            _barrier()  # the writer has made the file
        tensor = torch.from_file(str(file), shared=True, size=numel, dtype=torch.uint8).view(*shape)
        if writer:
            _barrier()
        return cls(tensor, file, writer)

    def publish(self, problems: list[Any]) -> list[Any]:
        """After local rank 0 has filled the tensor: every rank gets its list of problems (one
        entry per item, None for a usable one); the file is then removed (mappings stay)."""
        note = self.file.with_name(self.file.name + ".json")
        if self.is_writer:  # written whole, then renamed: a reader never sees a part of it
            part = note.with_name(note.name + ".part")
            part.write_text(json.dumps(problems))
            os.replace(part, note)
        _barrier()
        found = json.loads(note.read_text())
        _barrier()
        if self.is_writer:
            self.file.unlink(missing_ok=True)
            note.unlink(missing_ok=True)
        return found


def _barrier() -> None:
    torch.distributed.barrier()
