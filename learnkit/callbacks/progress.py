"""Progress reporting: forwards a fit's progress to a reporter (the CLI's rich bar or plain lines).

A reporter is any object with ``fit_start(n_epochs, names)``, ``epoch_start(epoch, n_batches)``,
``batch_end(i)``, ``epoch_end(row)`` and ``fit_end()``; ``row`` is the Recorder's history row of
the epoch (epoch, train_loss, valid_loss, each metric, time). Only the main process reports.
"""

from __future__ import annotations

from typing import Any

from learnkit.callback import Callback, RunState
from learnkit.distributed import is_main


class ProgressCallback(Callback):
    """Tells ``reporter`` where the fit is; reads the epoch's row from the learner's Recorder."""

    order = 10  # after the Recorder has written the epoch's row

    def __init__(self, reporter: Any):
        self.reporter = reporter
        self._main = True

    def on_train_begin(self, state: RunState) -> None:
        self._main = is_main()  # asked once a fit, not once a batch
        if self._main:
            names = state.learn.recorder.names  # the history row's columns (set by the Recorder, first)
            # epochs count from the run's start: a resumed run shows "epoch 4/10", not "4/7"
            self.reporter.fit_start(state.start_epoch + state.n_epochs, names)

    def on_epoch_begin(self, state: RunState) -> None:
        if self._main:
            self.reporter.epoch_start(state.epoch, state.n_batches)

    def on_batch_end(self, state: RunState) -> None:
        if state.train and self._main:
            self.reporter.batch_end(state.num_batch)

    def on_epoch_end(self, state: RunState) -> None:
        if self._main:
            self.reporter.epoch_end(dict(state.learn.recorder.history[-1]))

    def on_train_end(self, state: RunState) -> None:
        if self._main:
            self.reporter.fit_end()
