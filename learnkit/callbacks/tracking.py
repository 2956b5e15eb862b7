"""Callbacks that watch a monitored value: keep the best model, stop early.

``TrackerCallback`` holds what both need (monitor, mode, min_delta, best so far), as Keras's
MonitorCallback does. The monitored value comes from the epoch's validation (``valid_loss`` or a
metric's name) or from the training loss (``train_loss``).

As fastai v1, every fit starts afresh: ``best`` (and ``wait``) are reset at ``on_train_begin``, so a
second ``fit`` never compares with the first one's best. The one exception is a run resumed from
its checkpoint by the command line (a learner whose ``restart_epochs`` is off, continuing past
epoch 0): the restored ``best``/``wait`` carry on. Unless the learner is ``quiet``, they print
v1's lines ("Better model found at epoch 0 with valid_loss value: 0.61.", "Epoch 3: early stopping").
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from learnkit.callback import LearnerCallback, RunState
from learnkit.distributed import is_main
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.checkpoint_writer import CheckpointWriter
    from learnkit.learner import Learner

_MAX_HINTS = ("acc", "dice", "iou", "f1", "fbeta", "precision", "recall", "auc", "r2")


class TrackerCallback(LearnerCallback):
    """Base for callbacks that follow ``monitor`` across epochs.

    Args:
        monitor: ``valid_loss``, ``train_loss`` or a metric's name.
        mode: ``min``, ``max`` or ``auto`` (max for accuracy-like names, else min).
        min_delta: a change smaller than this is no improvement.
    """

    def __init__(
        self, learn: Learner, monitor: str = "valid_loss", mode: str = "auto", min_delta: float = 0.0
    ):
        super().__init__(learn)
        if mode not in ("auto", "min", "max"):
            raise UsageError(f"mode must be auto, min or max, not {mode!r}")
        if mode == "auto":
            mode = "max" if any(h in monitor.lower() for h in _MAX_HINTS) else "min"
        self.monitor, self.mode, self.min_delta = monitor, mode, abs(min_delta)
        self.reset()

    def reset(self) -> None:
        """Forget the best value (a new fit)."""
        self.best = -math.inf if self.mode == "max" else math.inf

    def on_train_begin(self, state: RunState) -> None:
        if state.epoch_base == state.start_epoch:  # a new fit, not a resumed command-line run
            self.reset()

    def say(self, line: str) -> None:
        """Print one of v1's lines, unless the learner is quiet (the command line's are)."""
        if not getattr(self.learn, "quiet", False) and is_main():
            print(line, flush=True)

    def current(self, state: RunState) -> float | None:
        """The monitored value at the end of this epoch (None when there was no validation)."""
        row = self.learn.recorder.history[-1] if self.learn.recorder.history else {}
        if self.monitor not in row:
            names = [k for k in row if k not in ("epoch", "time")]
            raise UsageError(f"cannot monitor {self.monitor!r}; choose one of {', '.join(names)}")
        value = row[self.monitor]
        return None if value is None else float(value)

    def improved(self, value: float) -> bool:
        """True when ``value`` beats the best so far by more than ``min_delta``."""
        if self.mode == "max":
            return value - self.min_delta > self.best
        return value + self.min_delta < self.best

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


class SaveModelCallback(TrackerCallback):
    """Save the model after an epoch: ``every='epoch'``, or on ``'improvement'`` of ``monitor``.

    As fastai v1: with ``every='epoch'`` each epoch gets its own file, ``name_<epoch>`` (the fit's
    epoch, from 0); with ``every='improvement'`` the file ``name`` holds the best model so far, and
    at the end of the fit the best weights are loaded back into the learner (weights only: the
    optimizer and the run's position stay where the fit ended; not after a fit that failed).
    A checkpoint saved on improvement carries the metadata key ``best``:
    ``{"epoch": ..., "monitor": ..., "value": ...}``.

    Args:
        name: the checkpoint name (``path/model_dir/name.safetensors``).
        with_opt: also save the optimizer state (what ``--resume`` needs).
        load_best: with ``every='improvement'``, load the best weights when the fit ends (fastai's
            behaviour, the default). The command line passes False: its ``last`` checkpoint and the
            results it reports must be the last epoch's.
        rolling: with ``every='epoch'``, overwrite one file ``name`` instead of one per epoch (the
            command line's ``last``).
        writer: a :class:`~learnkit.checkpoint_writer.CheckpointWriter` (also among the fit's
            callbacks) that writes the checkpoint in the background; None: written before the
            fit goes on.

    Example:
        >>> learn.fit(5, 1e-3, callbacks=[SaveModelCallback(learn, monitor="accuracy", name="best")])
    """

    order = 50

    def __init__(
        self,
        learn: Learner,
        monitor: str = "valid_loss",
        mode: str = "auto",
        every: str = "improvement",
        name: str = "bestmodel",
        with_opt: bool = True,
        load_best: bool = True,
        rolling: bool = False,
        writer: CheckpointWriter | None = None,
    ):
        super().__init__(learn, monitor, mode)
        if every not in ("improvement", "epoch"):
            raise UsageError(f"every must be 'improvement' or 'epoch', not {every!r}")
        self.every, self.name, self.with_opt = every, name, with_opt
        self.load_best, self.rolling = load_best, rolling
        self.writer = writer
        self.saved = False  # whether this callback has written ``name`` (only then is it loaded back)
        self.best_epoch: int | None = None  # the epoch of this fit's best (``every='improvement'``)

    def on_train_begin(self, state: RunState) -> None:
        self.best_epoch = None
        if state.epoch_base == state.start_epoch:
            self.saved = False
        super().on_train_begin(state)

    @property
    def cb_name(self) -> str:
        return f"save_model_{self.name}"

    def file_name(self, epoch: int) -> str:
        """The checkpoint name of ``epoch``: ``name_<epoch>`` with ``every='epoch'``, else ``name``."""
        return f"{self.name}_{epoch}" if self.every == "epoch" and not self.rolling else self.name

    def on_epoch_end(self, state: RunState) -> None:
        if self.every == "epoch":
            if is_main():
                self._save(self.file_name(state.fit_epoch), None)
            return
        value = self.current(state)
        if value is not None and not math.isnan(value) and self.improved(value):
            self.best = value
            self.best_epoch = int(state.fit_epoch)  # this fit's best so far (not kept in checkpoints)
            self.say(f"Better model found at epoch {state.fit_epoch} with {self.monitor} value: {value}.")
            if is_main():
                # the checkpoint says what made it best (history.csv's epoch numbering)
                best = {"epoch": int(state.fit_epoch), "monitor": self.monitor, "value": float(value)}
                self._save(self.name, {"best": best})
            self.saved = True

    def _save(self, name: str, metadata: dict | None) -> None:
        if self.writer is None:
            self.learn.save(name, with_opt=self.with_opt, metadata=metadata)
        else:
            self.writer.request(self.learn, name, self.with_opt, metadata)

    def on_train_end(self, state: RunState) -> None:
        if self.every != "improvement" or not self.load_best or not self.saved or state.exception:
            return
        from learnkit.distributed import barrier

        barrier()  # rank 0 wrote the file
        self.learn.load(self.name, with_opt=False)


class EarlyStoppingCallback(TrackerCallback):
    """End the fit when ``monitor`` has not improved for ``patience`` epochs (after that epoch's
    ``on_epoch_end``, as v1's ``stop_training``); prints ``Epoch N: early stopping``."""

    order = 60

    def __init__(
        self,
        learn: Learner,
        monitor: str = "valid_loss",
        mode: str = "auto",
        min_delta: float = 0.0,
        patience: int = 0,
    ):
        self.patience = patience
        super().__init__(learn, monitor, mode, min_delta)

    def reset(self) -> None:
        super().reset()
        self.wait = 0

    def on_epoch_end(self, state: RunState) -> None:
        value = self.current(state)
        if value is None:
            return
        if self.improved(value):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = state.epoch
            self.say(f"Epoch {state.fit_epoch}: early stopping")
            state.stop_training = True

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait = state["best"], state["wait"]
