"""How much memory a RAM cache may take: what is available now (``MemAvailable``, and a container's
cgroup limit less its usage), with headroom, shared by the processes of the run on this machine.

``cache="auto"`` caches when the decoded images fit; ``cache="ram"`` that cannot fit is refused
(:class:`~learnkit.errors.DataError`, exit 3) before anything is decoded.

Example:
    >>> cache_budget() > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import os
from pathlib import Path

HEADROOM = 0.25
"""The share of the available memory a cache leaves free (the model, batches, workers, the OS)."""
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # v1
)


def _read_int(file: str) -> int | None:
    try:
        text = Path(file).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # v2 writes "max" for no limit


def mem_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cgroup_room() -> int | None:
    """A container's memory limit less its usage, in bytes; None without a limit."""
    for limit_file, usage_file in _CGROUP_FILES:
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and limit < 2**60:  # v1 writes a huge number for no limit
            return max(0, limit - (usage or 0))
    return None


def available_memory() -> int | None:
    """The memory this process may still take: the smaller of ``MemAvailable`` and the cgroup's room."""
    known = [v for v in (mem_available(), cgroup_room()) if v is not None]
    return min(known) if known else None


def local_processes() -> int:
    """The processes of the run on this machine (torchrun's ``LOCAL_WORLD_SIZE``; 1 outside it)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def cache_copies() -> int:
    """The copies of a RAM cache the run's processes on this machine hold: one when they share it
    (:mod:`learnkit.data.shared_cache`, ``/dev/shm``), else one per process."""
    from learnkit.data.shared_cache import sharing_possible

    return 1 if sharing_possible() else local_processes()


def cache_budget(processes: int | None = None) -> int | None:
    """The bytes one cache may take: the available memory less :data:`HEADROOM`, divided by the
    copies held (``processes``, default :func:`cache_copies`); None when the memory cannot be read."""
    have = available_memory()
    if have is None:
        return None
    return int(have * (1 - HEADROOM)) // (processes or cache_copies())


def gib(n_bytes: float) -> str:
    """``n_bytes`` as ``"1.5 GiB"`` (``"312 MiB"`` below one GiB)."""
    return f"{n_bytes / 2**30:.1f} GiB" if n_bytes >= 2**30 else f"{n_bytes / 2**20:.0f} MiB"
