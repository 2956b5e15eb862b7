"""The Recorder: what a run did, batch by batch and epoch by epoch, and the plots of it.

Always attached to a Learner (``learn.recorder``). It keeps the smoothed training loss (an
exponential moving average, beta 0.98, debiased), the learning rate and momentum of every batch, the
validation loss and metrics of every epoch, and one ``history`` row per epoch. A Learner's fits make
one continuous run: a second ``fit`` (or a resumed one) appends. Per-batch losses stay on the device
until the epoch ends, so recording costs no synchronisation; the smoothing runs on the host then,
over the whole epoch's losses at once, so a training batch costs the Recorder no tensor operation.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from learnkit.callback import LearnerCallback, RunState
from learnkit.plots import new_figure, save_figure


class SmoothLoss:
    """Debiased exponential moving average: ``avg = beta*avg + (1-beta)*x``, shown as ``avg/(1-beta**n)``."""

    def __init__(self, beta: float = 0.98):
        self.beta, self.n, self.mov_avg = beta, 0, 0.0

    def add(self, value: Any) -> Any:
        self.n += 1
        self.mov_avg = self.beta * self.mov_avg + (1 - self.beta) * value
        return self.mov_avg / (1 - self.beta**self.n)

    @property
    def smooth(self) -> float:
        return float(self.mov_avg) / (1 - self.beta**self.n) if self.n else float("nan")


class Recorder(LearnerCallback):
    """Records losses, learning rates, momentums and metrics; plots them as PNG files.

    Attributes:
        losses: smoothed training loss of every batch.
        lrs, moms: learning rate and momentum of the last layer group, every batch.
        group_lrs: the learning rate of every layer group, every batch.
        val_losses, metrics: per epoch; ``metrics_names`` names the columns of ``metrics``.
        nb_batches: batches trained in each epoch.
        history: one dict per epoch, keyed by :attr:`names`: epoch, train_loss, valid_loss, each
            metric, lr and mom (of the epoch's last training batch), time (seconds).
        schedule: the lr schedule of the latest fit (cleared as a fit begins, set by a scheduler
            such as 1cycle's; kept in checkpoints, so that a resumed run continues it), or None.
        lr_find_lrs, lr_find_losses: the last LR range test's lrs and smoothed losses (what
            :meth:`plot` draws); not part of the run's history, not saved in checkpoints.
    """

    order = -10

    def __init__(self, learn: Any, beta: float = 0.98):
        super().__init__(learn)
        self.beta = beta
        self.lr_find_lrs: list[float] = []
        self.lr_find_losses: list[float] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded (a new run)."""
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.group_lrs: list[list[float]] = []
        self.val_losses: list[float] = []
        self.metrics: list[list[float]] = []
        self.metrics_names: list[str] = []
        self.nb_batches: list[int] = []
        self.history: list[dict] = []
        self.schedule: dict | None = None
        self.smoother = SmoothLoss(self.beta)
        self._pending: list[torch.Tensor] = []
        self._epoch_batches = 0
        self._start = time.perf_counter()

    @property
    def names(self) -> list[str]:
        """The columns of a ``history`` row, in order (``history.csv``'s header, the epoch table's)."""
        return ["epoch", "train_loss", "valid_loss", *self.metrics_names, "lr", "mom", "time"]

    def on_train_begin(self, state: RunState) -> None:
        self.metrics_names = list(state.metrics_names)
        self.schedule = None  # a scheduler of this fit (ordered after the Recorder) records its own
        self._pending, self._epoch_batches = [], 0

    def on_epoch_begin(self, state: RunState) -> None:
        self._start = time.perf_counter()
        self._epoch_batches = 0

    def on_batch_begin(self, state: RunState) -> None:
        if state.train:
            lrs = state.opt.lrs
            self.group_lrs.append(lrs)
            self.lrs.append(lrs[-1])
            self.moms.append(state.opt.mom)

    def on_backward_begin(self, state: RunState) -> None:
        self._pending.append(state.last_loss.detach())  # no kernel, no sync: smoothed at flush
        self._epoch_batches += 1

    def flush(self) -> None:
        """Smooth this epoch's raw losses (still on the device) into ``losses``: one sync."""
        if self._pending:
            raw = torch.stack(self._pending).float().cpu().tolist()
            self._pending = []
            self.losses.extend(self.smoother.add(value) for value in raw)

    def on_epoch_end(self, state: RunState) -> None:
        self.flush()
        self.nb_batches.append(self._epoch_batches)
        metrics = state.last_metrics or []
        valid_loss = metrics[0] if metrics else None
        row = {"epoch": state.epoch, "train_loss": self.smoother.smooth, "valid_loss": valid_loss}
        values = metrics[1:] if metrics else [None] * len(self.metrics_names)
        row.update(zip(self.metrics_names, values))
        # the last group's lr and the momentum of the epoch's last training batch
        trained = self._epoch_batches > 0 and self.lrs
        row["lr"] = float(self.lrs[-1]) if trained else None
        row["mom"] = float(self.moms[-1]) if trained else None
        row["time"] = time.perf_counter() - self._start
        if valid_loss is not None:
            self.val_losses.append(valid_loss)
            self.metrics.append(list(values))
        self.history.append(row)

    def on_train_end(self, state: RunState) -> None:
        self.flush()

    # --- checkpointing ---
    def state_dict(self) -> dict:
        self.flush()
        keys = ("losses", "lrs", "moms", "group_lrs", "val_losses", "metrics", "metrics_names", "nb_batches")
        state = {k: getattr(self, k) for k in keys}
        state["history"] = self.history
        state["schedule"] = self.schedule
        state["smoother"] = {"n": self.smoother.n, "mov_avg": float(self.smoother.mov_avg)}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.reset()
        for key, value in state.items():
            if key != "smoother":
                setattr(self, key, value)
        self.smoother.n = state["smoother"]["n"]
        self.smoother.mov_avg = state["smoother"]["mov_avg"]

    # --- plots ---
    def _plot_path(self, name: str) -> Path:
        return Path(self.learn.path) / "plots" / f"{name}.png"

    def plot_losses(self, skip_start: int = 0, name: str = "losses") -> Path:
        """Training loss per batch and validation loss per epoch; returns the PNG's path."""
        self.flush()
        fig, ax = new_figure(figsize=(6, 4))
        its = list(range(len(self.losses)))[skip_start:]
        ax.plot(its, self.losses[skip_start:], label="train (smoothed)")
        if self.val_losses:
            ends = [sum(self.nb_batches[: i + 1]) - 1 for i in range(len(self.nb_batches))]
            ends = [e for e, row in zip(ends, self.history) if row["valid_loss"] is not None]
            ax.plot(ends, self.val_losses, marker="o", label="validation")
        ax.set_xlabel("batches processed")
        ax.set_ylabel("loss")
        ax.legend()
        return save_figure(fig, self._plot_path(name))

    def plot_lr(self, show_moms: bool = False, name: str = "lr") -> Path:
        """Learning rate (and, with ``show_moms``, momentum) per batch; returns the PNG's path."""
        its = list(range(len(self.lrs)))
        fig, axes = new_figure(1, 2 if show_moms else 1, figsize=(12 if show_moms else 6, 4))
        ax_lr = axes[0] if show_moms else axes
        ax_lr.plot(its, self.lrs)
        ax_lr.set_xlabel("iterations")
        ax_lr.set_ylabel("learning rate")
        if show_moms:
            axes[1].plot(its, self.moms)
            axes[1].set_xlabel("iterations")
            axes[1].set_ylabel("momentum")
        return save_figure(fig, self._plot_path(name))

    def plot_metrics(self, name: str = "metrics") -> Path:
        """Each metric per epoch, one panel each; returns the PNG's path."""
        if not self.metrics:
            from learnkit.errors import UsageError

            raise UsageError("no metrics recorded yet: fit with a validation set and metrics first")
        n = len(self.metrics_names)
        fig, axes = new_figure(n, 1, figsize=(6, 3 * n), squeeze=False)
        for i, metric in enumerate(self.metrics_names):
            values = [m[i] if m[i] is not None else math.nan for m in self.metrics]
            axes[i][0].plot(range(len(values)), values, marker="o")
            axes[i][0].set_ylabel(metric)
        axes[-1][0].set_xlabel("epoch")
        return save_figure(fig, self._plot_path(name))

    def plot(
        self, skip_start: int = 10, skip_end: int = 5, suggestion: bool = True, name: str = "lr_find"
    ) -> Path:
        """The last LR range test's smoothed loss against the lr (log scale); returns the PNG's path.

        Args:
            skip_start, skip_end: points left out at the start (noise) and the end (divergence).
            suggestion: mark the suggested lrs (steep, minimum, valley; see :mod:`learnkit.lr_suggest`).
            name: the file name: ``<learn.path>/plots/<name>.png``.
        """
        from learnkit.lr_suggest import suggest_lrs, trim_curve

        if not self.lr_find_lrs:
            from learnkit.errors import UsageError

            raise UsageError("no LR range test to plot: run learn.lr_find() first")
        trimmed = zip(*trim_curve(self.lr_find_lrs, self.lr_find_losses, skip_start, skip_end))
        finite = [(lr, x) for lr, x in trimmed if math.isfinite(x)]
        if not finite:
            from learnkit.errors import UsageError

            raise UsageError("the LR range test recorded no finite loss (it diverged at once)")
        lrs, losses = [p[0] for p in finite], [p[1] for p in finite]
        fig, ax = new_figure(figsize=(6, 4))
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("loss (smoothed)")
        if suggestion:
            res = suggest_lrs(self.lr_find_lrs, self.lr_find_losses, skip_start, skip_end)
            for (key, lr), marker in zip(res.items(), ("o", "v", "*")):
                nearest = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / lr)))
                ax.plot([lr], [losses[nearest]], marker, markersize=9, label=f"{key}: {lr:.2e}")
            ax.legend()
        return save_figure(fig, self._plot_path(name))
