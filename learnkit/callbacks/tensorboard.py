"""TensorBoard event files for a fit: losses, metrics, learning rate and momentum, per step and epoch.

Written through ``torch.utils.tensorboard`` under ``<learn.path>/tensorboard`` (``tensorboard
--logdir <run>`` shows them). Per step (the run's iteration): ``train/loss`` (raw), ``train/lr`` and
``train/mom`` of the last layer group. Per epoch: ``epoch/train_loss`` (smoothed),
``epoch/valid_loss``, ``epoch/<metric>``, ``epoch/lr`` and ``epoch/mom``. Step values are kept on
the device during the epoch and written at its end, so the loop never waits for the GPU for them.
Only rank 0 writes in a multi-process run.

Example:
    >>> learn.fit_one_cycle(3, 1e-3, callbacks=[TensorBoardLogger(learn)])  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.callback import LearnerCallback, RunState
from learnkit.distributed import is_main
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner

INSTALL_HINT = "pip install 'learnkit[tensorboard]'"


def summary_writer(log_dir: Path) -> Any:
    """A ``SummaryWriter`` for ``log_dir``; without the tensorboard package a one-line UsageError."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(f"--logger tensorboard needs the tensorboard package: {INSTALL_HINT}") from None
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardLogger(LearnerCallback):
    """Writes the fit's scalars as TensorBoard events under ``<learn.path>/<folder>``.

    Args:
        learn: the Learner.
        folder: the event files' folder, relative to ``learn.path``.
    """

    order = 20  # after the Recorder has written the epoch's row

    def __init__(self, learn: Learner, folder: str = "tensorboard"):
        super().__init__(learn)
        self.folder = folder
        self.writer: Any = None
        self._steps: list[tuple[int, Any, float, float]] = []

    @property
    def log_dir(self) -> Path:
        return Path(self.learn.path) / self.folder

    def on_train_begin(self, state: RunState) -> None:
        if is_main() and self.writer is None:
            self.writer = summary_writer(self.log_dir)
        self._steps = []

    def on_backward_begin(self, state: RunState) -> None:
        if self.writer is None or not state.train:
            return
        opt = state.opt
        lr = float(opt.lrs[-1]) if opt is not None else float("nan")
        mom = float(opt.mom) if opt is not None and opt.mom is not None else float("nan")
        self._steps.append((state.iteration, state.last_loss.detach(), lr, mom))

    def _flush_steps(self) -> None:
        if not self._steps:
            return
        import torch

        losses = torch.stack([loss.float().reshape(()) for _, loss, _, _ in self._steps]).cpu().tolist()
        for (step, _, lr, mom), loss in zip(self._steps, losses):
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)
            self.writer.add_scalar("train/mom", mom, step)
        self._steps = []

    def on_epoch_end(self, state: RunState) -> None:
        if self.writer is None:
            return
        self._flush_steps()
        recorder = self.learn.recorder
        row = recorder.history[-1] if recorder.history else {}
        epoch = int(state.epoch)  # the run's epoch: a second fit's rows (from 0 again) must not overwrite
        for key, value in row.items():
            if key not in ("epoch", "time") and isinstance(value, int | float):
                self.writer.add_scalar(f"epoch/{key}", float(value), epoch)
        # the epoch's last lr and momentum, unless the Recorder's row already holds them
        if recorder.lrs and "lr" not in row:
            self.writer.add_scalar("epoch/lr", float(recorder.lrs[-1]), epoch)
        if recorder.moms and recorder.moms[-1] is not None and "mom" not in row:
            self.writer.add_scalar("epoch/mom", float(recorder.moms[-1]), epoch)
        self.writer.flush()

    def on_train_end(self, state: RunState) -> None:
        if self.writer is not None:
            self._flush_steps()
            self.writer.close()
            self.writer = None
