"""fastai v1's callback protocol beside learnkit's typed one: the state as keyword arguments, a
returned dict of updates.

A v1 hook reads what it names (``def on_epoch_end(self, epoch, last_metrics, **kwargs)``) and may
return ``{'stop_training': True}``, ``{'last_output': ...}``, ``{'last_metrics': ...}`` ..., which
updates the run's state, as fastai v1's ``CallbackHandler._call_and_update`` does; a key that is no
part of the state is an error naming it. :func:`hook_kind` tells the two protocols apart from a
hook's signature, once, when the handler is made: a hook of one positional parameter (other than a
v1 state name) is typed and called as ``hook(state)``; any other (``**kwargs``, v1 names, none) is
v1's. Only v1 hooks pay for building the keyword arguments.

The names a v1 hook receives: ``epoch`` (from 0 each fit), ``iteration`` (batches trained in this
fit before the current one), ``num_batch``, ``n_epochs``, ``train``, ``last_input``,
``last_target``, ``last_output``, ``last_loss``, ``last_metrics``, ``smooth_loss``,
``skip_validate``, ``stop_epoch``, ``stop_training``, ``skip_step``, ``skip_zero``, ``skip_bwd``,
``metrics``, ``pbar`` (None), plus ``metrics_names`` at ``on_train_begin`` and ``exception`` (the
exception or False) at ``on_train_end``. A callback given as a metric gets the batch events of
validation only and ``on_epoch_end`` only after a validation, as in v1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learnkit.callback import Event, RunState

# the events by their names (learnkit.callback.Event is a StrEnum: its members equal these strings;
# importing it here would make an import cycle with the handler that imports this module)
TRAIN_BEGIN, EPOCH_BEGIN, BACKWARD_BEGIN = "on_train_begin", "on_epoch_begin", "on_backward_begin"
BATCH_BEGIN, BATCH_END, EPOCH_END, TRAIN_END = (
    "on_batch_begin",
    "on_batch_end",
    "on_epoch_end",
    "on_train_end",
)

# v1's name -> RunState's field, for the keys a returned dict may change
WRITABLE = {
    "last_input": "last_input",
    "last_target": "last_target",
    "last_output": "last_output",
    "last_loss": "last_loss",
    "last_metrics": "last_metrics",
    "skip_validate": "skip_validate",
    "stop_epoch": "stop_epoch",
    "stop_training": "stop_training",
    "skip_step": "skip_step",
    "skip_zero": "skip_zero",
    "skip_bwd": "skip_backward",
}
# keys of v1's state a hook receives but whose change learnkit ignores (the loop owns them)
READ_ONLY = ("epoch", "iteration", "num_batch", "n_epochs", "train", "smooth_loss", "metrics", "pbar")
STATE_NAMES = frozenset([*WRITABLE, *READ_ONLY, "metrics_names", "exception"])

_BATCH_EVENTS = (BATCH_BEGIN, BATCH_END)


class Kind:
    """How to call a v1 hook: all the state (``**kwargs``) or only the names it lists."""

    __slots__ = ("accepts_all", "names")

    def __init__(self, accepts_all: bool, names: frozenset[str]):
        self.accepts_all, self.names = accepts_all, names


def hook_kind(fn: Callable) -> Kind | None:
    """None for a typed hook (``hook(state)``), else how to call it the v1 way."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    P = inspect.Parameter
    var_kw = any(p.kind is P.VAR_KEYWORD for p in params)
    named = [p for p in params if p.kind not in (P.VAR_KEYWORD, P.VAR_POSITIONAL)]
    if not var_kw and len(named) == 1 and named[0].kind is not P.KEYWORD_ONLY:
        if named[0].name not in STATE_NAMES:
            return None
    if not var_kw and not named and any(p.kind is P.VAR_POSITIONAL for p in params):
        return None  # def hook(self, *args): typed
    return Kind(var_kw, frozenset(p.name for p in named))


class SmoothedLoss:
    """v1's ``smooth_loss`` kept only for v1 hooks: the losses wait on the device and are smoothed
    (debiased moving average, beta 0.98) when a v1 hook asks, so a batch costs no sync."""

    def __init__(self, beta: float = 0.98):
        self.beta = beta
        self.reset()

    def reset(self) -> None:
        self.n, self.avg, self.pending = 0, 0.0, []

    def add(self, loss: Any) -> None:
        self.pending.append(loss.detach() if hasattr(loss, "detach") else loss)

    def value(self) -> float | None:
        if self.pending:
            import torch

            stacked = torch.stack([torch.as_tensor(x).float().reshape(()) for x in self.pending])
            values = stacked.cpu().tolist()
            self.pending = []
            for v in values:
                self.n += 1
                self.avg = self.beta * self.avg + (1 - self.beta) * v
        return self.avg / (1 - self.beta**self.n) if self.n else None


class V1Hooks:
    """Wraps v1 hooks for one :class:`~learnkit.callback.CallbackHandler` and keeps what only they
    need: the smoothed loss, and a ``skip_validate`` returned at ``on_train_begin`` (v1 keeps it
    for the whole fit; learnkit's typed flag is per epoch)."""

    def __init__(self, state: RunState):
        self.state = state
        self.count = 0
        self.smooth = SmoothedLoss()
        self.skip_validate = False

    def wrap(self, fn: Callable, kind: Kind, event: Event, is_metric: bool) -> Callable:
        self.count += 1

        def call(state: RunState) -> None:
            if is_metric and (
                (event in _BATCH_EVENTS and state.train)
                or (event == EPOCH_END and state.last_metrics is None)
            ):
                return
            kwargs = self.kwargs(event, kind.accepts_all or "smooth_loss" in kind.names)
            if not kind.accepts_all:
                kwargs = {k: v for k, v in kwargs.items() if k in kind.names}
            new = fn(**kwargs)
            if new:
                self.update(new, event)

        call.__wrapped__ = fn  # type: ignore[attr-defined]
        return call

    def attach(self, listeners: dict[Event, list]) -> None:
        """Add the bookkeeping v1 hooks need (nothing when there are none)."""
        if not self.count:
            return
        listeners[TRAIN_BEGIN].insert(0, self._train_begin)
        listeners[EPOCH_BEGIN].insert(0, self._epoch_begin)
        listeners[BACKWARD_BEGIN].insert(0, self._backward_begin)

    def _train_begin(self, state: RunState) -> None:
        self.smooth.reset()
        self.skip_validate = False
        state.smooth_loss = None

    def _epoch_begin(self, state: RunState) -> None:
        if self.skip_validate:
            state.skip_validate = True

    def _backward_begin(self, state: RunState) -> None:
        if state.train and state.last_loss is not None:
            self.smooth.add(state.last_loss)

    def kwargs(self, event: Event, smooth: bool = True) -> dict[str, Any]:
        """v1's state dict for ``event``, from the run's state (``smooth``: with the smoothed loss,
        which reads the pending losses from the device)."""
        s = self.state
        iteration = s.iteration - s.start_iteration
        if event == BATCH_END and s.train:
            iteration -= 1  # v1 counts the batch after its on_batch_end
        kw = {
            "epoch": s.fit_epoch,
            "iteration": iteration,
            "num_batch": s.num_batch,
            "n_epochs": s.n_epochs,
            "train": s.train,
            "last_input": s.last_input,
            "last_target": s.last_target,
            "last_output": s.last_output,
            "last_loss": s.last_loss,
            "last_metrics": s.last_metrics,
            "smooth_loss": self.smooth.value() if smooth else None,
            "skip_validate": s.skip_validate,
            "stop_epoch": s.stop_epoch,
            "stop_training": s.stop_training,
            "skip_step": s.skip_step,
            "skip_zero": s.skip_zero,
            "skip_bwd": s.skip_backward,
            "metrics": s.metrics,
            "pbar": None,
        }
        if event == TRAIN_BEGIN:
            kw["metrics_names"] = list(s.metrics_names)
        if event == TRAIN_END:
            kw["exception"] = s.exception if s.exception is not None else False
        return kw

    def update(self, new: dict, event: Event) -> None:
        """Apply a hook's returned dict to the state, as v1's ``_call_and_update``."""
        if not isinstance(new, dict):
            return  # v1 callbacks sometimes return True/None from a helper; v1 ignores those too
        for key, value in new.items():
            field = WRITABLE.get(key)
            if field is not None:
                setattr(self.state, field, value)
                if key == "skip_validate" and event == TRAIN_BEGIN:
                    self.skip_validate = bool(value)
            elif key not in STATE_NAMES:
                from learnkit.errors import UsageError

                raise UsageError(f"{key} isn't a valid key in the state of the callbacks.")
