"""A CPU fit's torch thread count kept at the cores other processes leave free: :class:`CpuThreads`."""

from __future__ import annotations

import time

import torch

from learnkit import cpu_load
from learnkit.callback import Callback, RunState


class CpuThreads(Callback):
    """Re-measure, while training, how many cores other processes want, and follow with the threads.

    The thread count picked when the run starts (:func:`learnkit.jobs.setup.cpu_threads`) goes
    stale when another job starts or ends mid-run, and a thread sharing its core with a busy
    process stalls every parallel region (a resnet18 step took 3-5x longer on a 2-core machine).
    After training batches, at most every ``sample_every`` seconds, this counts the other
    processes' runnable threads (:func:`learnkit.cpu_load.others_runnable`); every ``window``
    seconds the mean sets the threads (:func:`learnkit.cpu_load.idle_cores`), with a margin of
    ``margin`` before adding a thread back so that the count does not flap. Not for
    deterministic runs: their thread count must not depend on the load.

    Args:
        cores: the cores this process may use.
        window: seconds between decisions.
        sample_every: the shortest time between two samples (cheap batches are not all sampled; a
            sample costs ~0.1-0.5 ms, so 5 a second stay under 0.3 % of training, bench/per_batch.py).
        margin: how much lower than the switching point the mean must be to add a thread.
    """

    order = 900  # after everything else: nothing reads the thread count

    def __init__(self, cores: int, window: float = 2.0, sample_every: float = 0.2, margin: float = 0.25):
        self.cores, self.window, self.sample_every, self.margin = cores, window, sample_every, margin
        self.changes: list[tuple[int, int]] = []  # (iteration, threads): what was decided when
        self._reset(time.perf_counter())

    def _reset(self, now: float) -> None:
        self._since, self._last, self._sum, self._n = now, 0.0, 0, 0

    def on_train_begin(self, state: RunState) -> None:
        self._reset(time.perf_counter())

    def on_epoch_begin(self, state: RunState) -> None:
        self._reset(time.perf_counter())  # validation's time is not a window of training batches

    def on_batch_end(self, state: RunState) -> None:
        if not state.train:
            return
        now = time.perf_counter()
        if now - self._last < self.sample_every:
            return
        self._last = now
        others = cpu_load.others_runnable()
        if others is None:
            return
        self._sum, self._n = self._sum + others, self._n + 1
        if now - self._since >= self.window and self._n >= 3:
            self.decide(self._sum / self._n, state.iteration)
            self._reset(now)

    def decide(self, others: float, iteration: int = 0) -> int:
        """Set the threads for ``others`` runnable threads of other processes (a mean); returns them."""
        current = torch.get_num_threads()
        want = cpu_load.idle_cores(others, self.cores)
        if want > current:  # add threads only when clearly free
            want = max(current, cpu_load.idle_cores(others + self.margin, self.cores))
        if want != current:
            torch.set_num_threads(want)
            self.changes.append((iteration, want))
        return want
