"""1cycle training (Leslie Smith's policy, as fastai v1 runs it): :class:`OneCycleScheduler` and
:func:`fit_one_cycle`.

Of ``n = batches per epoch x tot_epochs`` iterations, the first ``a1 = int(n * pct_start)`` take the
lr of each layer group by cosine from ``max_lr / div_factor`` up to ``max_lr``, the other ``n - a1``
from ``max_lr`` down to ``max_lr / final_div``; momentum goes from ``moms[0]`` to ``moms[1]`` and back
over the same phases (the values come from :class:`learnkit.schedules.OneCycleSchedule`).

A cycle can span several fits: the scheduler records it in ``learn.recorder.schedule`` (every fit
clears it; a 1cycle fit sets it), which checkpoints keep, so a run loaded (or interrupted) inside a
cycle continues the same cycle by default (see :func:`fit_one_cycle`).

Example:
    >>> learn.fit_one_cycle(3, slice(1e-4, 1e-2))
    >>> learn.recorder.plot_lr(show_moms=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from learnkit.callback import Callback, LearnerCallback, RunState
from learnkit.errors import UsageError
from learnkit.optim import LRLike
from learnkit.schedules import OneCycleSchedule, ScheduleTrace

if TYPE_CHECKING:
    from learnkit.learner import Learner

__all__ = ["OneCycleScheduler", "batches_per_epoch", "fit_one_cycle", "one_cycle_plan", "resolve_cycle"]


MAX_PLAN_ITERATIONS = 1_000_000  # one_cycle_plan: ~5 s and ~100 MB on a laptop


def batches_per_epoch(dl: Any) -> int:
    """Batches in a whole epoch of ``dl``, even while it is positioned mid-epoch (a resumed run)."""
    return len(dl) + getattr(dl, "start_batch", 0)


class OneCycleScheduler(LearnerCallback):
    """Sets the lr and momentum of every training batch by fastai v1's 1cycle policy.

    The value of batch ``k`` is set before it starts (at ``on_train_begin`` for the first batch of
    the fit, at the previous batch's ``on_batch_end`` otherwise), so the Recorder, which reads the
    optimizer at ``on_batch_begin``, records what the batch ran with.

    Args:
        learn: the Learner.
        lr_max: the peak lr: a float, one per layer group, or a slice (see ``lr_range``).
        moms: momentum at the start and end of the cycle, and (second value) at the peak.
        div_factor: the cycle starts at ``lr_max / div_factor``.
        pct_start: the share of the cycle spent warming up.
        final_div: the cycle ends at ``lr_max / final_div`` (default ``div_factor * 1e4``).
        tot_epochs: the cycle's length in epochs (default: ``start_epoch`` + this fit's epochs).
        start_epoch: the cycle's epoch this fit starts at (0: a new cycle). A fit that starts
            mid-epoch (a resumed run) starts as many batches further in.

    Example:
        >>> sched = OneCycleScheduler(learn, 1e-2, tot_epochs=3, start_epoch=1)
        >>> learn.fit(2, 1e-2, callbacks=[sched])  # epochs 1 and 2 of a 3-epoch cycle
    """

    order = -5  # after the Recorder's on_train_begin (which clears the schedule record), before the rest

    def __init__(
        self,
        learn: Learner,
        lr_max: LRLike = slice(3e-3),
        moms: Sequence[float] = (0.95, 0.85),
        div_factor: float = 25.0,
        pct_start: float = 0.3,
        final_div: float | None = None,
        tot_epochs: int | None = None,
        start_epoch: int | None = None,
    ):
        super().__init__(learn)
        self.lr_max, self.moms = lr_max, tuple(float(m) for m in moms)
        self.div_factor, self.pct_start, self.final_div = div_factor, pct_start, final_div
        self.tot_epochs, self.start_epoch = tot_epochs, start_epoch or 0
        self.schedule: OneCycleSchedule | None = None
        self._first_iteration = 0  # the run's iteration count at the cycle's iteration 0

    def cycle_epochs(self, n_epochs: int) -> int:
        """The cycle's length in epochs, for a fit of ``n_epochs`` epochs."""
        return self.tot_epochs if self.tot_epochs is not None else self.start_epoch + n_epochs

    def make_schedule(self, n_epochs: int, n_batches: int) -> OneCycleSchedule:
        """The cycle of a fit of ``n_epochs`` epochs of ``n_batches`` batches."""
        return OneCycleSchedule(
            n_iter=n_batches * self.cycle_epochs(n_epochs),
            max_lrs=tuple(self.learn.lr_range(self.lr_max)),
            moms=self.moms,
            div_factor=self.div_factor,
            pct_start=self.pct_start,
            final_div=self.final_div,
        )

    def first_index(self, n_batches: int) -> int:
        """The cycle's iteration at which this fit starts."""
        return self.start_epoch * n_batches + self.learn.batch

    def on_train_begin(self, state: RunState) -> None:
        n_batches = batches_per_epoch(state.data.train_dl)
        self.schedule = self.make_schedule(state.n_epochs, n_batches)
        first = self.first_index(n_batches)
        self._first_iteration = state.iteration - first
        self._set(state.opt, first)
        recorder = getattr(self.learn, "recorder", None)
        if recorder is not None:
            recorder.schedule = {
                "kind": "one_cycle",
                "start_epoch": state.start_epoch - self.start_epoch,  # the run's epoch the cycle began at
                "tot_epochs": self.cycle_epochs(state.n_epochs),
                "batches_per_epoch": n_batches,
                "max_lrs": list(self.schedule.max_lrs),
                "moms": list(self.moms),
                "div_factor": self.div_factor,
                "pct_start": self.pct_start,
                "final_div": self.final_div,
            }

    def on_batch_end(self, state: RunState) -> None:
        if state.train:
            self._set(state.opt, state.iteration - self._first_iteration)

    def _set(self, opt: Any, i: int) -> None:
        opt.lr = self.schedule.lrs_at(i)
        opt.mom = self.schedule.mom_at(i)

    def __repr__(self) -> str:
        return (
            f"OneCycleScheduler(lr_max={self.lr_max}, tot_epochs={self.tot_epochs}, start={self.start_epoch})"
        )


def resolve_cycle(
    learn: Learner, cyc_len: int, tot_epochs: int | None = None, start_epoch: int | None = None
) -> tuple[int, int]:
    """``(start_epoch, tot_epochs)`` of a ``fit_one_cycle(cyc_len, ...)`` on ``learn`` now.

    Explicit values win. Otherwise, when the learner's position lies inside the cycle recorded in
    ``learn.recorder.schedule`` (a run loaded from a checkpoint taken mid-cycle, or a fit that was
    interrupted) and ``cyc_len`` is exactly the cycle's remaining epochs (or ``tot_epochs`` is the
    cycle's length), the fit continues that cycle; else it starts a new one of ``cyc_len`` epochs.
    """
    if isinstance(cyc_len, bool) or not isinstance(cyc_len, int) or cyc_len < 1:
        raise UsageError(f"cyc_len must be a whole number of epochs >= 1, got {cyc_len!r}")
    if start_epoch is None:
        start_epoch = 0
        cont = _continued_cycle(learn, cyc_len, tot_epochs)
        if cont is not None:
            start_epoch, tot_epochs = cont
    if tot_epochs is None:
        tot_epochs = start_epoch + cyc_len
    if start_epoch < 0 or start_epoch + cyc_len > tot_epochs:
        raise UsageError(
            f"a fit of {cyc_len} epochs from epoch {start_epoch} does not fit a cycle of {tot_epochs} epochs"
        )
    return start_epoch, tot_epochs


def _continued_cycle(learn: Learner, cyc_len: int, tot_epochs: int | None) -> tuple[int, int] | None:
    recorder = getattr(learn, "recorder", None)
    record = getattr(recorder, "schedule", None)
    if not record or record.get("kind") != "one_cycle":
        return None
    start, total = record["start_epoch"], record["tot_epochs"]
    done = learn.epoch - start
    if not 0 <= done < total or (done == 0 and learn.batch == 0):
        return None  # outside the cycle, or at its very start (a new cycle is the same)
    remaining = total - done
    if tot_epochs is None and cyc_len != remaining:
        return None
    if tot_epochs is not None and (tot_epochs != total or cyc_len > remaining):
        return None
    return done, total


def fit_one_cycle(
    learn: Learner,
    cyc_len: int,
    max_lr: LRLike = slice(3e-3),
    moms: Sequence[float] = (0.95, 0.85),
    div_factor: float = 25.0,
    pct_start: float = 0.3,
    final_div: float | None = None,
    wd: LRLike | None = None,
    callbacks: Sequence[Callback] | None = None,
    tot_epochs: int | None = None,
    start_epoch: int | None = None,
) -> None:
    """Fit ``cyc_len`` epochs with the 1cycle policy (fastai v1's semantics).

    Args:
        learn: the Learner.
        cyc_len: epochs to run in this fit.
        max_lr: the peak lr: a float, one per layer group, or a slice (``slice(3e-3)``: the head
            at 3e-3, the other groups at 3e-4).
        moms, div_factor, pct_start, final_div: see :class:`OneCycleScheduler`.
        wd: weight decay (default ``learn.wd``).
        callbacks: more callbacks for this fit.
        tot_epochs, start_epoch: fit part of a longer cycle: epochs ``start_epoch ..
            start_epoch + cyc_len - 1`` of a ``tot_epochs``-epoch cycle. By default a learner whose
            position lies inside a recorded cycle (loaded from a checkpoint saved mid-cycle, or
            interrupted) continues it when ``cyc_len`` is the cycle's remaining epochs; otherwise
            this fit is a new cycle of ``cyc_len`` epochs (see :func:`resolve_cycle`).

    Example:
        >>> learn.fit_one_cycle(1, 1e-2, tot_epochs=3)  # epoch 0 of a 3-epoch cycle
        >>> learn.save("e1")
        >>> learn2.load("e1").fit_one_cycle(2, 1e-2)  # epochs 1 and 2 of the same cycle
    """
    start_epoch, tot_epochs = resolve_cycle(learn, cyc_len, tot_epochs, start_epoch)
    max_lrs = learn.lr_range(max_lr)
    sched = OneCycleScheduler(learn, max_lrs, moms, div_factor, pct_start, final_div, tot_epochs, start_epoch)
    learn.fit(cyc_len, max_lrs, wd=wd, callbacks=[sched, *(callbacks or [])])


def one_cycle_plan(
    learn: Learner,
    cyc_len: int,
    max_lr: LRLike = slice(3e-3),
    moms: Sequence[float] = (0.95, 0.85),
    div_factor: float = 25.0,
    pct_start: float = 0.3,
    final_div: float | None = None,
    tot_epochs: int | None = None,
    start_epoch: int | None = None,
) -> ScheduleTrace:
    """The lrs and momentums ``fit_one_cycle`` would set with these arguments, batch by batch,
    without training (a dry run): what ``learn.recorder`` would record.

    Raises:
        UsageError: more than :data:`MAX_PLAN_ITERATIONS` batches to list (a mistyped ``cyc_len``
            would otherwise fill the memory, or never end).
    """
    start_epoch, tot_epochs = resolve_cycle(learn, cyc_len, tot_epochs, start_epoch)
    n_batches = batches_per_epoch(learn.data.train_dl)
    if cyc_len * n_batches > MAX_PLAN_ITERATIONS:
        raise UsageError(
            f"a plan lists every batch: {cyc_len} epochs of {n_batches} batches is more than "
            f"{MAX_PLAN_ITERATIONS:,}; plan fewer epochs"
        )
    sched = OneCycleScheduler(learn, max_lr, moms, div_factor, pct_start, final_div, tot_epochs, start_epoch)
    schedule = sched.make_schedule(cyc_len, n_batches)
    return schedule.simulate(sched.first_index(n_batches), (start_epoch + cyc_len) * n_batches)
