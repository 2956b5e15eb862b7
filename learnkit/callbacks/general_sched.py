"""Schedule any hyper-parameters phase after phase (fastai v1's ``GeneralScheduler`` and
``TrainingPhase``, ``fastai/callbacks/general_sched.py``).

Example (v1's docs: warm up linearly, then anneal with a cosine)::

    n = len(learn.data.train_dl)
    phases = [
        TrainingPhase(n).schedule_hp("lr", (1e-4, 1e-2)),
        TrainingPhase(n * 2).schedule_hp("lr", (1e-2, 1e-5), anneal=annealing_cos),
    ]
    learn.fit(3, callbacks=[GeneralScheduler(learn, phases)])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from learnkit.callback import LearnerCallback, RunState
from learnkit.schedules import annealing_linear, annealing_no

if TYPE_CHECKING:
    from learnkit.learner import Learner

STATS = ("lr", "mom", "wd", "beta")  # what a phase may schedule (v1's OptimWrapper.set_stat names)


class Scheduler:
    """v1's ``Scheduler``: from ``vals[0]`` to ``vals[1]`` over ``n_iter`` steps with ``func``
    (linear for a pair, constant for one value); ``step()`` returns the next value."""

    def __init__(self, vals: Any, n_iter: int, func: Callable | None = None):
        pair = isinstance(vals, tuple)
        self.start, self.end = (_values(vals[0]), _values(vals[1])) if pair else (_values(vals), 0)
        self.n_iter = max(1, int(n_iter))
        self.func = func if func is not None else (annealing_linear if pair else annealing_no)
        self.n = 0

    def restart(self) -> None:
        self.n = 0

    def step(self) -> Any:
        self.n += 1
        return self.func(self.start, self.end, self.n / self.n_iter)

    @property
    def is_done(self) -> bool:
        return self.n >= self.n_iter


def _values(v: Any) -> Any:
    """A number, or one value per layer group as an array (a list, a tensor) so annealing works."""
    if isinstance(v, (list, np.ndarray)) or hasattr(v, "tolist") and not isinstance(v, (int, float)):
        return np.asarray(v.tolist() if hasattr(v, "tolist") else v, dtype=float)
    return v


class TrainingPhase:
    """A phase of ``length`` iterations; :meth:`schedule_hp` adds a hyper-parameter's schedule."""

    def __init__(self, length: int):
        self.length = length
        self.scheds: dict[str, Scheduler] = {}

    def schedule_hp(self, name: str, vals: Any, anneal: Callable | None = None) -> TrainingPhase:
        """Schedule ``name`` (``lr``, ``mom``, ``wd``, ``beta``) from ``vals`` (a pair: start, end)."""
        if name not in STATS:
            from learnkit.errors import UsageError

            raise UsageError(f"cannot schedule {name!r}: choose one of {', '.join(STATS)}")
        self.scheds[name] = Scheduler(vals, self.length, anneal)
        return self


class GeneralScheduler(LearnerCallback):
    """Runs ``phases`` one after the other, setting their hyper-parameters every training batch;
    when the last phase is done the fit ends (v1's ``stop_training``)."""

    order = 5  # after the Recorder (-10) has read this batch's lr, as v1's scheduler after its own

    def __init__(self, learn: Learner, phases: Sequence[TrainingPhase], start_epoch: int | None = None):
        super().__init__(learn)
        self.phases, self.start_epoch = list(phases), start_epoch

    def _set(self, name: str, value: Any) -> None:
        value = value.tolist() if isinstance(value, np.ndarray) else value
        opt = self.learn.opt
        if name == "beta":
            for group in opt.opt.param_groups:
                if "betas" in group:
                    group["betas"] = (group["betas"][0], float(np.mean(value)))
                elif "alpha" in group:
                    group["alpha"] = float(np.mean(value))
            return
        setattr(opt, name, value)

    def on_train_begin(self, state: RunState) -> None:
        self.scheds = [p.scheds for p in self.phases]
        for name, sched in self.scheds[0].items():
            sched.restart()
            self._set(name, sched.start)
        self.idx_s = 0

    def on_batch_end(self, state: RunState) -> None:
        if not state.train:
            return
        if self.idx_s >= len(self.scheds):
            state.stop_training = state.stop_epoch = True
            return
        sched = self.scheds[self.idx_s]
        for name, s in sched.items():
            self._set(name, s.step())
        if list(sched.values())[0].is_done:
            self.idx_s += 1
