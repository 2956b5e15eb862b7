"""Lower the learning rate when the monitored value stops improving (fastai v1's
``ReduceLROnPlateauCallback``, ``fastai/callbacks/tracker.py``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from learnkit.callback import RunState
from learnkit.callbacks.tracking import TrackerCallback

if TYPE_CHECKING:
    from learnkit.learner import Learner


class ReduceLROnPlateauCallback(TrackerCallback):
    """After ``patience`` epochs without an improvement of ``monitor`` (by more than
    ``min_delta``), multiply every layer group's learning rate by ``factor``, while the last
    group's is above ``min_lr``; prints v1's ``Epoch N: reducing lr to X`` (unless quiet).

    As v1, this changes the optimizer's rate: under a schedule that sets the rate every batch
    (1cycle) the schedule wins; use it with ``fit``.
    """

    order = 55  # after SaveModelCallback (50), before EarlyStoppingCallback (60)

    def __init__(
        self,
        learn: Learner,
        monitor: str = "valid_loss",
        mode: str = "auto",
        patience: int = 0,
        factor: float = 0.2,
        min_delta: float = 0.0,
        min_lr: float = 0.001,
    ):
        self.patience, self.factor, self.min_lr = patience, factor, min_lr
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
        opt = self.learn.opt
        if self.wait > self.patience and opt.lr > self.min_lr:
            opt.lr = [lr * self.factor for lr in opt.lrs]
            self.wait = 0
            self.say(f"Epoch {state.fit_epoch}: reducing lr to {opt.lr}")

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.wait = state["best"], state["wait"]
