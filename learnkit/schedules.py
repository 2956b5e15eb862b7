"""Hyper-parameter schedules as pure functions: compute, simulate and plot them without training.

An annealing function ``f(start, end, pct)`` goes from ``start`` (``pct=0``) to ``end`` (``pct=1``).
A :class:`Phase` runs one of them over ``n_iter`` iterations; iteration ``k`` (0-based) of a phase
is at ``pct = k / n_iter``, so the phase's ``end`` is first reached by the iteration *after* it (the
next phase's first, or the value left in the optimizer after the last batch). That is fastai v1's
``Scheduler``, and what :class:`learnkit.callbacks.one_cycle.OneCycleScheduler` follows.

Example:
    >>> trace = simulate_one_cycle(10, 1e-2, pct_start=0.3)
    >>> len(trace.lrs), trace.lrs[3] == 1e-2   # peak at iteration a1 = int(10 * 0.3) = 3
    (10, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

Annealer = Callable[[float, float, float], float]


def annealing_no(start: float, end: float, pct: float) -> float:
    """No annealing: always ``start``."""
    return start


def annealing_linear(start: float, end: float, pct: float) -> float:
    """Linear from ``start`` to ``end``."""
    return start + pct * (end - start)


def annealing_exp(start: float, end: float, pct: float) -> float:
    """Exponential (geometric) from ``start`` to ``end``: linear on a log scale."""
    return start * (end / start) ** pct


def annealing_cos(start: float, end: float, pct: float) -> float:
    """Cosine from ``start`` to ``end``: ``end + (start - end) / 2 * (1 + cos(pi * pct))``."""
    return end + (start - end) / 2 * (1 + math.cos(math.pi * pct))


def annealing_poly(degree: float) -> Annealer:
    """Polynomial decay of ``degree``: ``end + (start - end) * (1 - pct) ** degree``."""

    def annealing(start: float, end: float, pct: float) -> float:
        return end + (start - end) * (1 - pct) ** degree

    return annealing


@dataclass(frozen=True)
class Phase:
    """``func`` from ``start`` to ``end`` over ``n_iter`` iterations."""

    n_iter: int
    start: float
    end: float
    func: Annealer = annealing_cos

    def at(self, k: int) -> float:
        """The value of iteration ``k`` (0-based) of this phase: ``func(start, end, k / n_iter)``."""
        return self.func(self.start, self.end, k / self.n_iter)


def schedule_value(phases: Sequence[Phase], i: int) -> float:
    """The value at iteration ``i`` (0-based) of phases run one after the other.

    Phases of zero length are skipped. Past the last iteration the value is the last phase's
    ``end`` (what a scheduler leaves in the optimizer once the schedule is done).
    """
    if i < 0:
        raise ValueError(f"iteration must be >= 0, got {i}")
    for phase in phases:
        if i < phase.n_iter:
            return phase.at(i)
        i -= phase.n_iter
    return phases[-1].end


def one_cycle_phases(n_iter: int, pct_start: float = 0.3) -> tuple[int, int]:
    """The lengths ``(a1, a2)`` of 1cycle's two phases: ``a1 = int(n_iter * pct_start)`` warm-up
    iterations, then ``a2 = n_iter - a1`` of annealing.

    >>> one_cycle_phases(24, 0.3)
    (7, 17)
    """
    if n_iter < 0 or not 0 <= pct_start <= 1:
        raise ValueError(f"need n_iter >= 0 and 0 <= pct_start <= 1, got {n_iter}, {pct_start}")
    a1 = int(n_iter * pct_start)
    return a1, n_iter - a1


@dataclass(frozen=True)
class ScheduleTrace:
    """What a schedule sets, iteration by iteration: the lr of every layer group, and the momentum.

    ``lrs`` is the last group's lr (what the Recorder's ``lrs`` holds), ``group_lrs`` all of them.
    """

    group_lrs: list[list[float]] = field(default_factory=list)
    moms: list[float] = field(default_factory=list)

    @property
    def lrs(self) -> list[float]:
        return [g[-1] for g in self.group_lrs]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"lrs", "group_lrs", "moms"}``."""
        return {"lrs": self.lrs, "group_lrs": self.group_lrs, "moms": self.moms}


@dataclass(frozen=True)
class OneCycleSchedule:
    """fastai v1's 1cycle over ``n_iter`` iterations, for one or several layer groups.

    With ``a1, a2 = one_cycle_phases(n_iter, pct_start)``: the lr of each group goes by cosine from
    ``max_lr / div_factor`` up to ``max_lr`` over the first ``a1`` iterations, then down to
    ``max_lr / final_div`` over the other ``a2``; the momentum goes by cosine from ``moms[0]`` to
    ``moms[1]`` and back over the same phases.

    Args:
        n_iter: iterations in the whole cycle (batches per epoch x epochs).
        max_lrs: the peak lr of each layer group.
        moms: momentum (SGD's ``momentum`` or Adam's ``beta1``) at the ends and at the peak.
        div_factor: the first lr is ``max_lr / div_factor``.
        pct_start: the share of the iterations spent warming up.
        final_div: the last lr is ``max_lr / final_div``; default ``div_factor * 1e4``.
    """

    n_iter: int
    max_lrs: tuple[float, ...]
    moms: tuple[float, float] = (0.95, 0.85)
    div_factor: float = 25.0
    pct_start: float = 0.3
    final_div: float | None = None

    def __post_init__(self) -> None:
        if self.div_factor <= 0 or (self.final_div is not None and self.final_div <= 0):
            raise ValueError("div_factor and final_div must be > 0")
        one_cycle_phases(self.n_iter, self.pct_start)  # validates

    @property
    def phase_lengths(self) -> tuple[int, int]:
        return one_cycle_phases(self.n_iter, self.pct_start)

    @property
    def run_lengths(self) -> tuple[int, int]:
        """The phases' lengths as the scheduler runs them: each at least one iteration (fastai v1's
        ``Scheduler`` takes ``max(1, n_iter)``), so a warm-up that rounds to zero batches
        (``int(n_iter * pct_start) == 0``) still runs one batch at ``max_lr / div_factor``."""
        a1, a2 = self.phase_lengths
        return max(1, a1), max(1, a2)

    def lr_phases(self, max_lr: float) -> list[Phase]:
        a1, a2 = self.run_lengths
        final_div = self.div_factor * 1e4 if self.final_div is None else self.final_div
        return [
            Phase(a1, max_lr / self.div_factor, max_lr, annealing_cos),
            Phase(a2, max_lr, max_lr / final_div, annealing_cos),
        ]

    def mom_phases(self) -> list[Phase]:
        a1, a2 = self.run_lengths
        hi, lo = self.moms
        return [Phase(a1, hi, lo, annealing_cos), Phase(a2, lo, hi, annealing_cos)]

    @cached_property
    def _phases(self) -> tuple[list[list[Phase]], list[Phase]]:
        # built once: a scheduler asks for every batch's values, and the phases never change
        return [self.lr_phases(m) for m in self.max_lrs], self.mom_phases()

    def lrs_at(self, i: int) -> list[float]:
        """The lr of every layer group at iteration ``i`` (``i >= n_iter``: the final lrs)."""
        return [schedule_value(phases, i) for phases in self._phases[0]]

    def mom_at(self, i: int) -> float:
        """The momentum at iteration ``i`` (``i >= n_iter``: ``moms[0]``)."""
        return schedule_value(self._phases[1], i)

    def simulate(self, start: int = 0, stop: int | None = None) -> ScheduleTrace:
        """The values of iterations ``start .. stop - 1`` (default: the whole cycle)."""
        stop = self.n_iter if stop is None else stop
        lr_phases = [self.lr_phases(m) for m in self.max_lrs]
        mom_phases = self.mom_phases()
        return ScheduleTrace(
            group_lrs=[[schedule_value(p, i) for p in lr_phases] for i in range(start, stop)],
            moms=[schedule_value(mom_phases, i) for i in range(start, stop)],
        )


def simulate_one_cycle(
    n_iter: int,
    max_lr: Any = 3e-3,
    n_groups: int = 1,
    moms: tuple[float, float] = (0.95, 0.85),
    div_factor: float = 25.0,
    pct_start: float = 0.3,
    final_div: float | None = None,
) -> ScheduleTrace:
    """The lrs and momentums of a 1cycle of ``n_iter`` iterations, without training.

    ``max_lr`` is a float, one value per group or a slice (see :func:`learnkit.optim.lr_range`).

    >>> simulate_one_cycle(4, slice(1e-3), n_groups=2, pct_start=0.5).group_lrs[2]
    [0.0001, 0.001]
    """
    from learnkit.optim import lr_range

    max_lrs = tuple(lr_range(max_lr, n_groups))
    schedule = OneCycleSchedule(n_iter, max_lrs, tuple(moms), div_factor, pct_start, final_div)
    return schedule.simulate()
