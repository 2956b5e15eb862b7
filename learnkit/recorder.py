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
from typing import TYPE_CHECKING, Any

import torch

from learnkit.callback import LearnerCallback, RunState
from learnkit.plots import finish_figure, new_figure

if TYPE_CHECKING:
    from learnkit.learner import Learner


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

    def __init__(self, learn: Learner, beta: float = 0.98):
        super().__init__(learn)
        self.beta = beta
        self.lr_find_lrs: list[float] = []
        self.lr_find_losses: list[float] = []
        self.added_metric_names: list[str] = []  # see add_metric_names
        self._state: RunState | None = None
        self._epoch_recorded = False
        self._run_curve: tuple[list, list] | None = None  # see show_lr_find
        self.min_grad_lr: float | None = None  # set by plot(suggestion=True), as fastai v1's
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
        self._run_curve = None

    def show_lr_find(self, lrs: list[float], losses: list[float]) -> None:
        """After an LR range test, ``lrs``/``losses`` are its curve (fastai v1's recorder holds
        the finder's); the run's own come back at the next fit (and are what checkpoints keep)."""
        if self._run_curve is None:
            self._run_curve = (self.lrs, self.losses)
        self.lr_find_lrs, self.lr_find_losses = list(lrs), list(losses)
        self.lrs, self.losses = list(lrs), list(losses)

    def _end_lr_find_view(self) -> None:
        if self._run_curve is not None:
            self.lrs, self.losses = self._run_curve
            self._run_curve = None

    @property
    def names(self) -> list[str]:
        """The columns of a ``history`` row, in order (``history.csv``'s header, the epoch table's)."""
        return ["epoch", "train_loss", "valid_loss", *self.metrics_names, "lr", "mom", "time"]

    def on_train_begin(self, state: RunState) -> None:
        self._end_lr_find_view()
        self._state, self._epoch_recorded = state, False
        names = list(state.metrics_names)
        self.metrics_names = names + [n for n in self.added_metric_names if n not in names]
        self.schedule = None  # a scheduler of this fit (ordered after the Recorder) records its own
        self._pending, self._epoch_batches = [], 0

    def on_epoch_begin(self, state: RunState) -> None:
        self._epoch_recorded = False
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
        self._epoch_recorded = True

    # --- fastai v1's hooks for callbacks that compute metrics of their own ---
    def add_metric_names(self, names: str | list[str]) -> None:
        """Add columns for metrics a callback computes (call it in its ``on_train_begin``).

        The names are kept for the following fits too; a name already there is not repeated.
        """
        from learnkit.core import listify

        for name in listify(names):
            if name not in self.added_metric_names:
                self.added_metric_names.append(name)
            if name not in self.metrics_names:
                self.metrics_names.append(name)

    def add_metrics(self, mets: Any) -> None:
        """Add the values of this epoch's added metrics (one, or a list), in the order of their names.

        Called in a callback's ``on_epoch_end``: before the Recorder's they join the epoch's
        ``last_metrics`` (so trackers see them too), after it they complete the epoch's record.
        """
        from learnkit.core import listify

        values = [float(v) for v in listify(mets)]
        if not self._epoch_recorded:
            if self._state is not None and self._state.last_metrics is not None:
                self._state.last_metrics = add_metrics(self._state.last_metrics, values)
            return
        row = self.history[-1]
        missing = [n for n in self.metrics_names if n not in row or row[n] is None]
        for name, value in zip(missing, values):
            row[name] = value
        if row.get("valid_loss") is not None and self.metrics:
            self.metrics[-1] = [row.get(n) for n in self.metrics_names]

    def format_stats(self, stats: list) -> list[str]:
        """``stats`` (one per column of :attr:`names` but the time) as text, fastai v1's way: ``#na#``
        for a missing value, integers as they are, other numbers with 6 decimals; then this
        epoch's time (``mm:ss``)."""
        out = []
        for stat in stats:
            if stat is None:
                out.append("#na#")
            elif isinstance(stat, int):
                out.append(str(stat))
            else:
                out.append(f"{float(stat):.6f}")
        elapsed = int(time.perf_counter() - self._start)
        out.append(f"{elapsed // 60:02d}:{elapsed % 60:02d}")
        return out

    def on_train_end(self, state: RunState) -> None:
        self.flush()
        self._state = None  # add_metrics acts within a fit only; keep no reference to its batches

    # --- checkpointing ---
    def state_dict(self) -> dict:
        self.flush()
        keys = ("losses", "lrs", "moms", "group_lrs", "val_losses", "metrics", "metrics_names", "nb_batches")
        state = {k: getattr(self, k) for k in keys}
        if self._run_curve is not None:  # the run's, not the LR range test's shown in their place
            state["lrs"], state["losses"] = self._run_curve
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

    def loss_points(self, skip_start: int = 0, skip_end: int = 0) -> tuple[list, list, list, list]:
        """What :meth:`plot_losses` draws: ``(iterations, train losses, epoch ends, valid losses)``.

        The first ``skip_start`` and last ``skip_end`` batches are left out, and so is each
        validation point whose epoch ended among them (fastai v1's ``skip_start``/``skip_end``).
        """
        self.flush()
        run_losses = self._run_curve[1] if self._run_curve is not None else self.losses
        n = len(run_losses)
        its = _trim(list(range(n)), skip_start, skip_end)
        ends = [sum(self.nb_batches[: i + 1]) for i in range(len(self.nb_batches))]
        rows = zip(ends, self.history)
        pairs = [(e, row["valid_loss"]) for e, row in rows if row["valid_loss"] is not None]
        kept = [(e - 1, v) for e, v in pairs if e - skip_start >= 0 and n - e >= skip_end]
        return its, _trim(run_losses, skip_start, skip_end), [e for e, _ in kept], [v for _, v in kept]

    def plot_losses(
        self,
        skip_start: int = 0,
        skip_end: int = 0,
        return_fig: bool | None = None,
        *,
        name: str = "losses",
        figsize: tuple | None = None,
        dpi: int | None = None,
    ) -> Any:
        """Training loss per batch and validation loss per epoch, leaving out the first
        ``skip_start`` and last ``skip_end`` batches; returns the PNG's path (the ``Figure`` with
        ``return_fig``)."""
        its, losses, ends, val_losses = self.loss_points(skip_start, skip_end)
        fig, ax = new_figure(figsize=figsize or (6, 4), dpi=dpi)
        ax.plot(its, losses, label="train (smoothed)")
        if val_losses:
            ax.plot(ends, val_losses, marker="o", label="validation")
        ax.set_xlabel("batches processed")
        ax.set_ylabel("loss")
        ax.legend()
        return finish_figure(fig, self._plot_path(name), dpi, return_fig)

    def plot_lr(
        self,
        show_moms: bool = False,
        skip_start: int = 0,
        skip_end: int = 0,
        return_fig: bool | None = None,
        *,
        name: str = "lr",
        figsize: tuple | None = None,
        dpi: int | None = None,
    ) -> Any:
        """Learning rate (and, with ``show_moms``, momentum) per batch, leaving out the first
        ``skip_start`` and last ``skip_end`` batches; returns the PNG's path (the ``Figure`` with
        ``return_fig``)."""
        its = _trim(list(range(len(self.lrs))), skip_start, skip_end)
        size = figsize or (12 if show_moms else 6, 4)
        fig, axes = new_figure(1, 2 if show_moms else 1, figsize=size, dpi=dpi)
        ax_lr = axes[0] if show_moms else axes
        ax_lr.plot(its, _trim(self.lrs, skip_start, skip_end))
        ax_lr.set_xlabel("iterations")
        ax_lr.set_ylabel("learning rate")
        if show_moms:
            axes[1].plot(its, _trim(self.moms, skip_start, skip_end))
            axes[1].set_xlabel("iterations")
            axes[1].set_ylabel("momentum")
        return finish_figure(fig, self._plot_path(name), dpi, return_fig)

    def plot_metrics(
        self,
        skip_start: int = 0,
        skip_end: int = 0,
        return_fig: bool | None = None,
        *,
        name: str = "metrics",
        figsize: tuple | None = None,
        dpi: int | None = None,
    ) -> Any:
        """Each metric per epoch, one panel each, leaving out the first ``skip_start`` and last
        ``skip_end`` epochs; returns the PNG's path (the ``Figure`` with ``return_fig``)."""
        if not self.metrics:
            from learnkit.errors import UsageError

            raise UsageError("no metrics recorded yet: fit with a validation set and metrics first")
        n = len(self.metrics_names)
        fig, axes = new_figure(n, 1, figsize=figsize or (6, 3 * n), dpi=dpi, squeeze=False)
        for i, metric in enumerate(self.metrics_names):
            values = [m[i] if m[i] is not None else math.nan for m in self.metrics]
            epochs = _trim(list(range(len(values))), skip_start, skip_end)
            axes[i][0].plot(epochs, _trim(values, skip_start, skip_end), marker="o")
            axes[i][0].set_ylabel(metric)
        axes[-1][0].set_xlabel("epoch")
        return finish_figure(fig, self._plot_path(name), dpi, return_fig)

    def plot(
        self,
        skip_start: int = 10,
        skip_end: int = 5,
        suggestion: bool = False,
        return_fig: bool | None = None,
        show_grid: bool = False,
        *,
        marks: bool | None = None,
        name: str = "lr_find",
        figsize: tuple | None = None,
        dpi: int | None = None,
    ) -> Any:
        """The last LR range test's smoothed loss against the lr (log scale), as fastai v1's
        ``Recorder.plot``; returns the PNG's path (the ``Figure`` with ``return_fig``).

        Args:
            skip_start, skip_end: points left out at the start (noise) and the end (divergence).
            suggestion: fastai v1's: mark the point of steepest descent (``np.gradient`` of the
                trimmed losses, smallest), print ``Min numerical gradient: ...`` and ``Min loss
                divided by 10: ...``, and keep the former in ``min_grad_lr``.
            show_grid: a log grid.
            marks: also mark learnkit's suggestions (steep, minimum, valley; see
                :mod:`learnkit.lr_suggest`); default: with ``suggestion``.
            name: the file name: ``<learn.path>/plots/<name>.png``.
        """
        import numpy as np

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
        fig, ax = new_figure(figsize=figsize or (6, 4), dpi=dpi)
        ax.plot(lrs, losses)
        ax.set_xscale("log")
        ax.set_xlabel("Learning Rate")
        ax.set_ylabel("Loss")
        if show_grid:
            ax.grid(True, which="both", ls="-")
        if suggestion:
            v1_lrs = _trim(self.lr_find_lrs, skip_start, skip_end)
            v1_losses = _trim(self.lr_find_losses, skip_start, skip_end)
            if len(v1_losses) < 2:
                print("Failed to compute the gradients, there might not be enough points.")
            else:
                mg = int(np.gradient(np.array(v1_losses)).argmin())
                print(f"Min numerical gradient: {v1_lrs[mg]:.2E}")
                ax.plot(v1_lrs[mg], v1_losses[mg], markersize=10, marker="o", color="red")
                self.min_grad_lr = v1_lrs[mg]
                ml = int(np.argmin(v1_losses))
                print(f"Min loss divided by 10: {v1_lrs[ml] / 10:.2E}")
        if suggestion if marks is None else marks:
            res = suggest_lrs(self.lr_find_lrs, self.lr_find_losses, skip_start, skip_end)
            for (key, lr), marker in zip(res.items(), ("o", "v", "*")):
                nearest = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i] / lr)))
                ax.plot([lr], [losses[nearest]], marker, markersize=9, label=f"{key}: {lr:.2e}")
            ax.legend()
        return finish_figure(fig, self._plot_path(name), dpi, return_fig)


def _trim(values: list, skip_start: int, skip_end: int) -> list:
    """``values`` without the first ``skip_start`` and the last ``skip_end`` items."""
    return values[skip_start : len(values) - skip_end] if skip_end > 0 else values[skip_start:]


def add_metrics(last_metrics: list | None, mets: Any) -> list:
    """``last_metrics`` followed by ``mets`` (one value or several): fastai v1's ``add_metrics``."""
    from learnkit.core import listify

    return [*(last_metrics or []), *listify(mets)]
