"""Progress reporting: forwards a fit's progress to a reporter (the CLI's rich bar or plain lines).

A reporter is any object with ``fit_start(n_epochs, names)``, ``epoch_start(epoch, n_batches)``,
``batch_end(i, loss=None, lr=None)``, ``epoch_end(row)`` and ``fit_end()``; ``row`` is the
Recorder's history row of the epoch (epoch, train_loss, valid_loss, each metric, time). ``loss``
is the running smoothed training loss, refreshed about twice a second (reading it costs a device
sync; ``None`` in between), and ``lr`` the last layer group's learning rate. Only the main process
reports.
"""

from __future__ import annotations

import time
from typing import Any

from learnkit.callback import Callback, RunState
from learnkit.distributed import is_main
from learnkit.recorder import SmoothLoss

REFRESH_S = 0.5  # how often the running loss is read from the device


class ProgressCallback(Callback):
    """Tells ``reporter`` where the fit is; reads the epoch's row from the learner's Recorder.

    A Learner given a callback with ``reports_progress`` adds no default progress of its own
    (see :mod:`learnkit.callbacks.epoch_table`), so nothing prints twice.
    """

    order = 10  # after the Recorder has written the epoch's row
    reports_progress = True

    def __init__(self, reporter: Any, beta: float = 0.98):
        self.reporter = reporter
        self._main = True
        self._smoother = SmoothLoss(beta)
        self._pending: list[Any] = []
        self._due = 0.0

    def on_train_begin(self, state: RunState) -> None:
        self._main = is_main()  # asked once a fit, not once a batch
        self._smoother = SmoothLoss(self._smoother.beta)
        if self._main:
            names = state.learn.recorder.names  # the history row's columns (set by the Recorder, first)
            # epochs count from the run's start: a resumed run shows "epoch 4/10", not "4/7"
            self.reporter.fit_start(state.start_epoch + state.n_epochs, names)

    def on_epoch_begin(self, state: RunState) -> None:
        if self._main:
            self.reporter.epoch_start(state.epoch, state.n_batches)

    def on_batch_end(self, state: RunState) -> None:
        if not (state.train and self._main):
            return
        if state.last_loss is not None:
            self._pending.append(state.last_loss.detach())
        now = time.monotonic()
        loss = None
        if now >= self._due:  # the lr is a host number, read every batch; the loss needs a sync
            self._due = now + REFRESH_S
            loss = self._flush()
        self.reporter.batch_end(state.num_batch, loss=loss, lr=_last_lr(state))

    def _flush(self) -> float | None:
        """Smooth the losses gathered since the last read (one transfer for all of them)."""
        if not self._pending:
            return None
        import torch

        values = torch.stack([v.float().reshape(()) for v in self._pending]).cpu().tolist()
        self._pending.clear()
        smooth = None
        for value in values:
            smooth = self._smoother.add(value)
        return smooth

    def on_epoch_end(self, state: RunState) -> None:
        if self._main:
            self._flush()
            self.reporter.epoch_end(dict(state.learn.recorder.history[-1]))

    def on_train_end(self, state: RunState) -> None:
        if self._main:
            self.reporter.fit_end()


def _last_lr(state: RunState) -> float | None:
    opt = getattr(state, "opt", None)
    try:
        return float(opt.lr) if opt is not None else None
    except (AttributeError, TypeError, ValueError, IndexError):
        return None
