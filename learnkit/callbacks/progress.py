"""Progress reporting: forwards a fit's progress to a reporter (the CLI's rich bar or plain lines).

A reporter is any object with ``fit_start(n_epochs, names)``, ``epoch_start(epoch, n_batches)``,
``batch_end(i, loss=None, lr=None)``, ``epoch_end(row)`` and ``fit_end()``; ``row`` is the
Recorder's history row of the epoch (epoch, train_loss, valid_loss, each metric, time). ``loss``
is the running smoothed training loss, refreshed about twice a second (``None`` in between): it
is averaged on the device and copied to the host without blocking, so no batch waits on a sync;
``lr`` is the last layer group's learning rate at the step that loss was read (``None`` with it).
A reporter may also have ``validate_start(n_batches)`` and ``valid_batch_end(i)``: the validation
pass's progress. Only the main process reports.
"""

from __future__ import annotations

import time
from typing import Any

from learnkit.callback import Callback, RunState
from learnkit.distributed import is_main

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
        self.beta = beta
        self._main = True
        self._reset()

    def _reset(self) -> None:
        self._avg: Any = None  # the running (biased) average, a 0-d tensor on the loss's device
        self._n = 0  # losses averaged into it
        self._host: Any = None  # a 1-element host tensor the average is copied into, and ...
        self._view: Any = None  # ... a numpy view of it: reading that is no tensor call, no sync
        self._event: Any = None  # marks the copy on a CUDA stream; None when no copy is in flight
        self._copied_n = 0  # how many losses the copy in flight averages
        self._copied_lr: float | None = None  # the lr of the step that copy was made at
        self._due = 0.0

    def on_train_begin(self, state: RunState) -> None:
        self._main = is_main()  # asked once a fit, not once a batch
        self._reset()
        if self._main:
            import torch

            self._host = torch.zeros(1, pin_memory=torch.cuda.is_available())
            self._view = self._host.numpy()  # once a fit, outside the batches
            names = state.learn.recorder.names  # the history row's columns (set by the Recorder, first)
            # epochs count from the run's start: a resumed run shows "epoch 3 (of 10)", not "(of 7)"
            self.reporter.fit_start(state.start_epoch + state.n_epochs, names)

    def on_epoch_begin(self, state: RunState) -> None:
        if self._main:
            self.reporter.epoch_start(state.epoch, state.n_batches)

    def on_validate_begin(self, state: RunState) -> None:
        start = getattr(self.reporter, "validate_start", None)
        if self._main and start is not None:
            dl = getattr(getattr(state.learn, "data", None), "valid_dl", None)
            try:
                start(len(dl) if dl is not None else None)
            except TypeError:  # a loader without a length
                start(None)

    def on_batch_end(self, state: RunState) -> None:
        if not self._main:
            return
        if not state.train:
            step = getattr(self.reporter, "valid_batch_end", None)
            if step is not None:
                step(state.num_batch)
            return
        if state.last_loss is not None:
            self._average(state.last_loss)
        loss = self._read(_last_lr(state))
        # the lr goes with the loss it was read with (the same step), never a newer one
        self.reporter.batch_end(state.num_batch, loss=loss, lr=self._copied_lr if loss is not None else None)

    def _average(self, loss: Any) -> None:
        """Fold ``loss`` into the running average on its own device: queued work, no sync."""
        import torch

        if not isinstance(loss, torch.Tensor):
            return
        value = loss.detach().float().reshape(())
        if self._avg is None or self._avg.device != value.device:
            self._avg, self._n, self._event = torch.zeros((), device=value.device), 0, None
            if value.device.type not in ("cpu", "cuda"):  # no copy known not to block: no running loss
                self._view = None
        self._avg.mul_(self.beta).add_(value, alpha=1 - self.beta)
        self._n += 1

    def _read(self, lr: float | None = None) -> float | None:
        """The running smoothed loss when a fresh value is on the host, else None.

        About every ``REFRESH_S`` seconds the average is copied to pinned host memory without
        blocking (a CUDA event marks when it lands); a later batch reads the copy once the event
        says it is done. ``lr`` (this step's) is kept with the copy, as ``_copied_lr``. The host
        never waits on the device, so the loop keeps its pace.
        """
        if self._view is None or self._avg is None:
            return None
        import torch

        loss = None
        if self._event is not None and self._event.query():
            self._event = None
            loss = float(self._view[0]) / (1 - self.beta**self._copied_n)
        now = time.monotonic()
        if self._event is None and now >= self._due:
            self._due = now + REFRESH_S
            self._copied_n, self._copied_lr = self._n, lr
            if self._avg.is_cuda:
                self._host[0].copy_(self._avg, non_blocking=True)
                self._event = torch.cuda.Event()
                self._event.record()
            else:  # on the CPU the copy is done when it returns
                self._host[0].copy_(self._avg)
                loss = float(self._view[0]) / (1 - self.beta**self._copied_n)
        return loss

    def on_epoch_end(self, state: RunState) -> None:
        if self._main:
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
