"""The LR range test: :class:`LRFinder` and :func:`lr_find`.

The lr grows exponentially from ``start_lr`` to ``end_lr`` over ``num_it`` training batches (the
training data cycled as often as needed, no validation) while the loss is smoothed as the Recorder
smooths it; the test stops early when the smoothed loss exceeds 4x the best so far or is not finite.
Afterwards the learner is put back exactly as it was (:class:`LearnerSnapshot`: model, optimizer,
run position, Recorder, callbacks' state, loss scale, RNG states), on every exit, errors and
Ctrl-C included. The snapshot lives in memory (on the CPU); nothing is written to disk.

Example:
    >>> res = learn.lr_find()
    >>> res.valley, res["steep"], res.minimum
    >>> learn.recorder.plot()  # plots/lr_find.png, suggestions marked
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from learnkit.callback import Callback, CancelFit, LearnerCallback, RunState
from learnkit.callbacks.one_cycle import batches_per_epoch
from learnkit.errors import UsageError
from learnkit.lr_suggest import SuggestedLRs, suggest_lrs
from learnkit.optim import LRLike
from learnkit.recorder import SmoothLoss
from learnkit.schedules import annealing_exp

if TYPE_CHECKING:
    from learnkit.learner import Learner

__all__ = ["LRFinder", "LearnerSnapshot", "lr_find"]


class LRFinder(LearnerCallback):
    """Exponentially growing lr over ``num_it`` batches; records the lr and smoothed loss of each.

    Args:
        learn: the Learner.
        start_lr, end_lr: the first lr and the one the test grows towards (batch ``i``, 0-based,
            runs at ``start_lr * (end_lr / start_lr) ** (i / num_it)``); a float, one value per
            layer group, or a slice.
        num_it: batches to run at most.
        stop_div: stop once the smoothed loss exceeds 4x the best so far. A loss that is not
            finite always stops the test (nothing after it can be learnt from).

    After a fit, ``lrs`` (the last layer group's) and ``losses`` hold the curve and ``stop_reason``
    says why it ended: ``"num_it"``, ``"diverged"`` or ``"not finite"``.
    """

    order = 1000  # last: every other callback sees the final batch's on_batch_end before it stops the fit

    def __init__(
        self,
        learn: Learner,
        start_lr: LRLike = 1e-7,
        end_lr: LRLike = 10,
        num_it: int = 100,
        stop_div: bool = True,
    ):
        super().__init__(learn)
        if isinstance(num_it, bool) or not isinstance(num_it, int) or num_it < 1:
            raise UsageError(f"num_it must be a whole number >= 1, got {num_it!r}")
        self.start_lrs, self.end_lrs = learn.lr_range(start_lr), learn.lr_range(end_lr)
        for lr in (*self.start_lrs, *self.end_lrs):
            if not (math.isfinite(lr) and lr > 0):
                raise UsageError(f"start_lr and end_lr must be finite and > 0, got {start_lr} and {end_lr}")
        self.num_it, self.stop_div = num_it, stop_div
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.stop_reason: str | None = None
        self._first_iteration = 0

    def lrs_at(self, i: int) -> list[float]:
        """The lr of every layer group for batch ``i`` (0-based) of the test."""
        return [annealing_exp(s, e, i / self.num_it) for s, e in zip(self.start_lrs, self.end_lrs)]

    def on_train_begin(self, state: RunState) -> None:
        self.lrs, self.losses, self.stop_reason = [], [], None
        self.best = math.inf
        self.smoother = SmoothLoss(getattr(getattr(self.learn, "recorder", None), "beta", 0.98))
        self._first_iteration = state.iteration
        state.opt.lr = self.lrs_at(0)

    def on_epoch_begin(self, state: RunState) -> None:
        state.skip_validate = True

    def on_batch_end(self, state: RunState) -> None:
        if not state.train:
            return
        done = state.iteration - self._first_iteration
        loss = float(self.smoother.add(float(state.last_loss)))
        self.lrs.append(state.opt.lr)
        self.losses.append(loss)
        if not math.isfinite(loss):
            self.stop_reason = "not finite"
        elif self.stop_div and loss > 4 * self.best:
            self.stop_reason = "diverged"
        elif done >= self.num_it:
            self.stop_reason = "num_it"
        if self.stop_reason is not None:
            raise CancelFit()
        self.best = min(self.best, loss)
        state.opt.lr = self.lrs_at(done)


def _cpu_copy(obj: Any) -> Any:
    """A deep copy of nested dicts/lists/tuples whose tensors are copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


class LearnerSnapshot:
    """Everything a fit changes in a Learner, copied (to the CPU) so that :meth:`restore` puts it back.

    That is: the model's parameters, buffers, gradients and train/eval modes; the optimizer (its
    state and hyper-parameters, or that there was none); the run position (epoch, iteration,
    batch); the Recorder, exactly; the other callbacks' ``state_dict()``; the precision's state
    (loss scale); the training loader's position and generators; and the Python, NumPy and torch
    RNG states. Nothing is written to disk.

    Example:
        >>> snap = LearnerSnapshot(learn)
        >>> try:
        ...     learn.fit(1, 1.0)
        ... finally:
        ...     snap.restore()
    """

    def __init__(self, learn: Learner):
        self.learn = learn
        model = learn.model
        self.weights = {
            k: v.detach().to("cpu", copy=True)
            for k, v in model.state_dict(keep_vars=True).items()
            if isinstance(v, torch.Tensor)  # not a module's non-tensor extra state
        }
        self.grads = [
            (p, None if p.grad is None else p.grad.detach().to("cpu", copy=True)) for p in model.parameters()
        ]
        self.modes = [(m, m.training) for m in model.modules()]
        self.opt = learn.opt
        self.opt_state = _cpu_copy(learn.opt.state_dict()) if learn.opt is not None else None
        self.opt_wds = list(learn.opt.wds) if learn.opt is not None else None
        self.position = (learn.epoch, learn.iteration, learn.batch)
        self.recorder = getattr(learn, "recorder", None)
        self.recorder_vars = (
            copy.deepcopy({k: v for k, v in vars(self.recorder).items() if k != "learn"})
            if self.recorder is not None
            else None
        )
        others = [*learn.fn_callbacks, *learn.callbacks]
        self.callbacks = [
            (cb, copy.deepcopy(cb.state_dict()))
            for cb in others
            if cb is not self.recorder and hasattr(cb, "state_dict")
        ]
        self.precision = learn.precision
        self.precision_state = _cpu_copy(learn.precision.state_dict())
        self.loader = self._loader_position(learn)
        self.rng = self._rng_states()

    @staticmethod
    def _loader_position(learn: Learner) -> dict:
        dl = getattr(getattr(learn, "data", None), "train_dl", None)
        if dl is None:
            return {}
        inner = getattr(dl, "dl", dl)
        gens = [
            getattr(inner, "generator", None),
            getattr(getattr(inner, "sampler", None), "generator", None),
        ]
        return {
            "dl": dl,
            "position": (dl.epoch, dl.start_batch) if hasattr(dl, "start_batch") else None,
            "generators": [(g, g.get_state()) for g in gens if isinstance(g, torch.Generator)],
        }

    @staticmethod
    def _rng_states() -> dict:
        states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        learn = self.learn
        with torch.no_grad():
            live = learn.model.state_dict(keep_vars=True)
            for key, value in self.weights.items():
                live[key].copy_(value)
            for p, grad in self.grads:
                p.grad = None if grad is None else grad.to(p.device)
        for m, training in self.modes:
            m.training = training
        learn.opt = self.opt
        if self.opt is not None:
            self.opt.load_state_dict(self.opt_state)
            self.opt.wd = self.opt_wds
        learn.epoch, learn.iteration, learn.batch = self.position
        if self.recorder is not None:
            vars(self.recorder).clear()
            vars(self.recorder).update(self.recorder_vars)
            self.recorder.learn = learn
        for cb, state in self.callbacks:
            cb.load_state_dict(state)
        learn.precision = self.precision
        self.precision.load_state_dict(self.precision_state)
        if self.loader.get("position") is not None:
            self.loader["dl"].set_epoch(*self.loader["position"])
        for gen, state in self.loader.get("generators", []):
            gen.set_state(state)
        random.setstate(self.rng["python"])
        np.random.set_state(self.rng["numpy"])
        torch.set_rng_state(self.rng["torch"])
        if "cuda" in self.rng:
            torch.cuda.set_rng_state_all(self.rng["cuda"])


def lr_find(
    learn: Learner,
    start_lr: LRLike = 1e-7,
    end_lr: LRLike = 10,
    num_it: int = 100,
    stop_div: bool = True,
    wd: LRLike | None = None,
    callbacks: Sequence[Callback] = (),
) -> SuggestedLRs:
    """Run the LR range test on ``learn``, put the learner back as it was, return the suggestions.

    Args:
        learn: the Learner (its model, optimizer, run position and history are restored after).
        start_lr, end_lr, num_it, stop_div: see :class:`LRFinder`.
        wd: weight decay during the test (default ``learn.wd``).
        callbacks: extra callbacks for the test (e.g. a ``ProgressCallback`` showing the lr and loss).

    Returns:
        ``SuggestedLRs`` (``steep``, ``minimum``, ``valley``; by attribute or key), computed by
        :func:`learnkit.lr_suggest.suggest_lrs` over the curve trimmed as ``recorder.plot`` trims
        it. The curve itself is kept in ``learn.recorder.lr_find_lrs``/``lr_find_losses``, and (as
        fastai v1's) in ``learn.recorder.lrs``/``losses`` until the next fit.

    Example:
        >>> res = learn.lr_find(num_it=50)
        >>> learn.fit_one_cycle(3, res.valley)
    """
    finder = LRFinder(learn, start_lr, end_lr, num_it, stop_div)
    n_batches = batches_per_epoch(learn.data.train_dl)
    if n_batches == 0:
        raise UsageError("no training batches: the LR range test needs training data")
    snapshot = LearnerSnapshot(learn)
    try:
        learn.batch = 0  # whole epochs of data, from the start of one
        learn._prepare_opt(finder.start_lrs, wd)
        learn._run(math.ceil(num_it / n_batches), callbacks=[finder, *callbacks], metrics=[])
    finally:
        snapshot.restore()
    if not finder.lrs:
        raise UsageError("the LR range test ran no training batch")
    recorder = getattr(learn, "recorder", None)
    if recorder is not None:  # fastai v1: the recorder shows the finder's curve until the next fit
        recorder.show_lr_find(finder.lrs, finder.losses)
    return suggest_lrs(finder.lrs, finder.losses)
