"""Stopping a fit cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal only sets a flag; :class:`StopOnSignal` sees it at the next batch boundary, after
the step of the batch in flight is complete (never a half-applied step), and ends the fit with
``CancelFit``. The caller then saves what continues the run (``learnkit``'s fit commands write
``last`` with the optimizer and the run's position) and exits 130. A second signal (one more than
:data:`SAME_STOP` seconds after the first) aborts at once
(``KeyboardInterrupt``, through :func:`learnkit.safe_interrupt.interrupt`: never inside an import);
checkpoint writes are atomic, so even that leaves no torn file. The previous handlers are restored
when the ``catch_signals`` block ends.

In a run over several processes the ranks agree on the flag (a one-element all-reduce at each
check), so all of them stop after the same batch and no collective is left waiting.

Signals within :data:`SAME_STOP` seconds of the first are the same request, not a second one: a
signal sent to every process of a run (a scheduler's SIGTERM to the job, ``kill`` of the process
group) reaches a worker directly, then again from ``learnkit --nproc``'s launcher and from
torchrun's agent, which pass it on; taken as a second Ctrl-C, that copy used to abort the worker
before its ranks agreed on the stop, losing the mid-epoch save (gloo's "Connection closed by peer").

Example:
    >>> with catch_signals() as stop:
    ...     learn.fit(10, 1e-3, callbacks=[StopOnSignal(stop)])
    >>> if stop.requested:
    ...     learn.save("last")
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from learnkit.callback import Callback, CancelFit, RunState
from learnkit.distributed import any_rank, is_distributed
from learnkit.safe_interrupt import interrupt

SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
SAME_STOP = 1.0
"""Seconds after a first signal during which more signals are copies of it (see the module docstring)."""


class StopRequest:
    """What the signal handler records: whether a stop was asked for, and by which signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.at: float | None = None  # time.monotonic() of the first signal

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        """``SIGINT``, ``SIGTERM`` (or ``''`` when no signal came)."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a stop as a signal would (tests and callers that stop a run themselves)."""
        if self.signum is None:
            self.signum, self.at = signum, time.monotonic()


@contextmanager
def catch_signals(signals: Sequence[signal.Signals] = SIGNALS) -> Iterator[StopRequest]:
    """Within the block, the first of ``signals`` sets the returned request's flag; a second one
    (past :data:`SAME_STOP` seconds) raises ``KeyboardInterrupt`` at once. Handlers are only
    installed from the main thread (elsewhere the block runs with the process's handlers untouched)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested and stop.at is not None and time.monotonic() - stop.at < SAME_STOP:
            return  # a copy of the first (passed on by a launcher): the same stop
        if stop.requested:  # the second signal: no more waiting for a batch boundary
            _restore(previous)
            interrupt(frame)
            return
        stop.request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield stop
    finally:
        _restore(previous)


def _restore(previous: dict) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old if old is not None else signal.SIG_DFL)


class StopOnSignal(Callback):
    """Ends the fit at the next batch boundary once ``stop`` is requested.

    Checked at the end of every training batch (after the optimizer step, and after the other
    callbacks' ``on_batch_end``, so the run's position and the schedule are those of a completed
    batch), at the end of every validation batch and at the end of an epoch. In a single process a
    check reads a Python flag (free); over several processes it is a one-element all-reduce, done
    every ``every`` training batches.

    Args:
        stop: the request ``catch_signals`` returns.
        every: in a multi-process run, agree on the flag every ``every`` training batches.

    Attributes:
        stopped_at: ``(epoch, batch)`` of the position the fit stopped at (the next batch to run),
            or None.
    """

    order = 1000  # last: every other callback has seen the batch end before the fit stops

    def __init__(self, stop: StopRequest, every: int = 1) -> None:
        self.stop, self.every = stop, max(1, int(every))
        self.stopped_at: tuple[int, int] | None = None

    def _agreed(self) -> bool:
        return any_rank(self.stop.requested) if is_distributed() else self.stop.requested

    def _check(self, state: RunState, position: tuple[int, int]) -> None:
        if self._agreed():
            self.stop.request()  # a rank that saw no signal stops too
            self.stopped_at = position
            raise CancelFit(f"stopped by {self.stop.name or 'a signal'}")

    def on_batch_end(self, state: RunState) -> None:
        if state.train:
            if state.iteration % self.every == 0:
                self._check(state, (state.epoch, state.num_batch + 1))
        elif self.stop.requested and not is_distributed():
            # validation is not part of the saved position: the resumed run validates again
            self._check(state, (state.epoch, state.n_batches))

    def on_epoch_end(self, state: RunState) -> None:
        self._check(state, (state.epoch + 1, 0))
