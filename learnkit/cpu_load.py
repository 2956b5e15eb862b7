"""How many CPU cores other processes keep busy, measured over a window (Linux ``/proc/stat``).

Used to pick the torch thread count of a CPU fit. An OpenMP parallel region waits for its slowest
thread, so a thread that shares its core with another busy process slows every region down: on a
2-core machine running one other busy process, a resnet18 step took 3-5x longer with 2 threads than
with 1, while on the same machine idle 2 threads were ~1.4x faster than 1 (bench/README.md). So a
fit uses the cores that are idle, measured while it starts (imports, data set building), not a
fixed count. Imports no torch.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

_STAT = "/proc/stat"


def _read_stat() -> tuple[int, int, int] | None:
    """(busy jiffies, all jiffies, CPUs listed) of the whole machine, or None where unreadable."""
    try:
        with open(_STAT, encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    if not lines or not lines[0].startswith("cpu "):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user/nice)
    values = [int(v) for v in lines[0].split()[1:9]]
    if len(values) < 5:
        return None
    idle = values[3] + values[4]
    cpus = sum(1 for ln in lines[1:] if ln.startswith("cpu") and ln[3:4].isdigit())
    return sum(values) - idle, sum(values), cpus


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


@dataclass
class Probe:
    """Started at the beginning of a job; :meth:`others_busy` at the end of the window."""

    start_wall: float = field(default_factory=time.perf_counter)
    start_own: float = field(default_factory=_own_cpu_seconds)
    start_stat: tuple[int, int, int] | None = field(default_factory=_read_stat)

    def others_busy(self, min_window: float = 0.25) -> float | None:
        """Cores kept busy by other processes since the probe started (a mean over the window).

        None where it cannot be told: no ``/proc/stat``, or this process may not use every CPU
        the machine lists (a container limited to some of a large host's CPUs sees the host's
        load there, not its own). Sleeps until the window is ``min_window`` seconds long.
        """
        if self.start_stat is None:
            return None
        left = min_window - (time.perf_counter() - self.start_wall)
        if left > 0:
            time.sleep(left)
        end = _read_stat()
        if end is None or end[2] != self.start_stat[2] or end[2] != usable_cores():
            return None
        busy, total = end[0] - self.start_stat[0], end[1] - self.start_stat[1]
        if total <= 0:
            return None
        cpus = end[2]
        wall = time.perf_counter() - self.start_wall
        all_busy = busy / total * cpus  # mean cores busy on the machine, this process included
        own = (_own_cpu_seconds() - self.start_own) / wall if wall > 0 else 0.0
        return max(0.0, all_busy - own)


def others_runnable() -> int | None:
    """Threads of other processes that are running or waiting for a core right now.

    ``procs_running`` of ``/proc/stat`` counts every runnable thread of the machine, this
    process's included; those of this process (state ``R`` in ``/proc/self/task/*/stat``) are
    taken off. Unlike a CPU-time share, this also sees a ``nice``d busy process, which gets
    little CPU beside a 2-thread fit yet still stalls its parallel regions. None where unreadable.
    """
    try:
        with open(_STAT, encoding="ascii") as f:
            running = next((int(ln.split()[1]) for ln in f if ln.startswith("procs_running ")), None)
        if running is None:
            return None
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                    stat = f.read()
            except OSError:
                continue  # the thread ended
            if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "R":
                own += 1
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)


def idle_cores(others_busy: float, cores: int) -> int:
    """The thread count for ``cores`` usable cores with ``others_busy`` of them taken: at least 1."""
    return max(1, min(cores, int(cores - others_busy + 0.5)))
