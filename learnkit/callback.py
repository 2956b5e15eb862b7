"""The callback system: events, the run state callbacks share, and the handler that dispatches them.

A callback is an object with some of the ``on_*`` methods of :class:`Callback`; each receives the
one :class:`RunState` of the run and reads or changes it there (the input, the loss, the skip flags).
It stops a batch, an epoch or the whole fit by raising :class:`CancelBatch`, :class:`CancelEpoch` or
:class:`CancelFit`; the loop then calls the matching ``on_cancel_*`` event and carries on (or ends
the fit), so cleanup in ``on_epoch_end``/``on_train_end`` always runs.

fastai v1's protocol works beside it: a hook that takes the state as keyword arguments
(``def on_epoch_end(self, epoch, last_metrics, **kwargs)``) gets v1's state names (``epoch``,
``iteration``, ``num_batch``, ``last_loss``, ``last_output``, ``last_metrics``, ``smooth_loss``,
...) and may return a dict that updates them (``{'stop_training': True}``, ``{'last_output': ...}``),
as v1's ``CallbackHandler`` does; see :mod:`learnkit.callback_v1`. The handler tells the two apart
once, from each hook's signature, so a typed hook pays nothing for it.

Example:
    >>> class StopAfter(Callback):
    ...     def __init__(self, n): self.n = n
    ...     def on_batch_end(self, state):
    ...         if state.train and state.iteration >= self.n: raise CancelFit()
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learnkit.learner import Learner


class Event(StrEnum):
    """Every event of a fit, in the order the loop first calls them."""

    train_begin = "on_train_begin"
    epoch_begin = "on_epoch_begin"
    batch_begin = "on_batch_begin"
    loss_begin = "on_loss_begin"
    backward_begin = "on_backward_begin"
    backward_end = "on_backward_end"
    step_end = "on_step_end"
    batch_end = "on_batch_end"
    validate_begin = "on_validate_begin"  # after an epoch's training batches, before its validation
    epoch_end = "on_epoch_end"
    train_end = "on_train_end"
    cancel_batch = "on_cancel_batch"
    cancel_epoch = "on_cancel_epoch"
    cancel_train = "on_cancel_train"
    exception = "on_exception"


class CancelBatch(Exception):
    """Raised by a callback to skip the rest of the current batch."""


class CancelEpoch(Exception):
    """Raised by a callback to end the current epoch (validation still runs)."""


class CancelFit(Exception):
    """Raised by a callback to end the fit; ``on_train_end`` still runs."""


@dataclass
class RunState:
    """Everything a callback may read or change during a run, as named fields.

    Args:
        learn: the Learner running the fit, or None for the module-level functions.
        n_epochs: epochs this fit runs; ``epoch`` counts from ``start_epoch``.
        epoch: the run's epoch number (continues across fits and resumes).
        epoch_base: the run epoch this fit's shown epochs count from (``fit_epoch`` is
            ``epoch - epoch_base``): ``start_epoch`` for a Learner's fit (fastai v1 restarts at 0 each
            fit), 0 for the command line's runs (a resumed run continues its numbering).
        iteration: batches trained in the run so far (continues like ``epoch``).
        start_iteration: ``iteration`` when this fit began (v1's ``iteration`` counts from it).
        num_batch: index of the current batch in its epoch.
        train: True while training, False during validation.
        last_input, last_target, last_output, last_loss: the current batch and its results.
        last_metrics: ``[valid_loss, *metrics]`` after validation, else None.
        skip_backward, skip_step, skip_zero: set by a callback to skip that part of the step.
        skip_validate: set to skip the validation at the end of this epoch.
        stop_epoch: set during a batch to end the epoch after it (validation still runs); fastai v1's.
        stop_training: set to end the fit after this epoch's ``on_epoch_end``; fastai v1's.
        smooth_loss: the smoothed training loss, kept only when a v1-style hook is listening.
    """

    learn: Learner | None = None
    model: Any = None
    opt: Any = None
    loss_func: Any = None
    data: Any = None
    precision: Any = None
    metrics: list = field(default_factory=list)
    metrics_names: list[str] = field(default_factory=list)
    n_epochs: int = 0
    start_epoch: int = 0
    epoch: int = 0
    epoch_base: int = 0
    iteration: int = 0
    start_iteration: int = 0
    num_batch: int = 0
    n_batches: int = 0
    train: bool = True
    last_input: Any = None
    last_target: Any = None
    last_output: Any = None
    last_loss: Any = None
    last_metrics: list | None = None
    skip_backward: bool = False
    skip_step: bool = False
    skip_zero: bool = False
    skip_validate: bool = False
    stop_epoch: bool = False
    stop_training: bool = False
    smooth_loss: Any = None
    exception: BaseException | None = None

    @property
    def fit_epoch(self) -> int:
        """The epoch as shown (tables, history, v1 callbacks): counted from ``epoch_base``."""
        return self.epoch - self.epoch_base


class Callback:
    """Base class of callbacks. Subclasses override the events they need; ``order`` sorts them.

    Lower ``order`` runs first. Overriding no method costs nothing: the handler only calls the
    methods a callback defines.
    """

    order: int = 0

    def on_train_begin(self, state: RunState) -> None: ...
    def on_epoch_begin(self, state: RunState) -> None: ...
    def on_batch_begin(self, state: RunState) -> None: ...
    def on_loss_begin(self, state: RunState) -> None: ...
    def on_backward_begin(self, state: RunState) -> None: ...
    def on_backward_end(self, state: RunState) -> None: ...
    def on_step_end(self, state: RunState) -> None: ...
    def on_batch_end(self, state: RunState) -> None: ...
    def on_validate_begin(self, state: RunState) -> None: ...
    def on_epoch_end(self, state: RunState) -> None: ...
    def on_train_end(self, state: RunState) -> None: ...
    def on_cancel_batch(self, state: RunState) -> None: ...
    def on_cancel_epoch(self, state: RunState) -> None: ...
    def on_cancel_train(self, state: RunState) -> None: ...
    def on_exception(self, state: RunState) -> None: ...

    def state_dict(self) -> dict:
        """What to store with a checkpoint to continue this callback exactly (JSON-able)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def camel2snake(name: str) -> str:
    """``'CSVLogger'`` -> ``'csv_logger'``, ``'Recorder'`` -> ``'recorder'``: a callback's attribute name."""
    s1 = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s1).lower()


class LearnerCallback(Callback):
    """A callback bound to a Learner; made from ``callback_fns`` as ``fn(learn)``.

    The learner exposes it as ``learn.<cb_name>`` (snake-cased class name), set by the learner.
    """

    def __init__(self, learn: Learner):
        self.learn = learn

    @property
    def cb_name(self) -> str:
        return camel2snake(type(self).__name__)


class CallbackHandler:
    """Calls the callbacks of a run, in ``order``, for each event, with one shared :class:`RunState`.

    For each event it keeps the list of callbacks that define it, so an event nobody listens to
    costs one empty loop. A hook written for fastai v1's protocol (state as keyword arguments, a
    returned dict of updates) is wrapped once here (see :mod:`learnkit.callback_v1`). ``metrics``
    (callbacks made from the learner's metrics) run before the other callbacks of the same event,
    as in v1, so the Recorder and the trackers see the values they add.
    """

    def __init__(self, callbacks=(), state: RunState | None = None, metrics=()):
        from learnkit.callback_v1 import V1Hooks, hook_kind

        metric_ids = {id(m) for m in metrics if m is not None}
        both = [cb for cb in [*callbacks, *metrics] if cb is not None]
        self.callbacks = sorted(both, key=lambda cb: (id(cb) not in metric_ids, callback_order(cb)))
        self.state = state if state is not None else RunState()
        self.v1 = V1Hooks(self.state)
        self._listeners: dict[Event, list] = {}
        for event in Event:
            fns = []
            for cb in self.callbacks:
                if not _overrides(cb, event.value):
                    continue
                fn = getattr(cb, event.value)
                kind = hook_kind(fn)
                fns.append(fn if kind is None else self.v1.wrap(fn, kind, event, id(cb) in metric_ids))
            self._listeners[event] = fns
        self.v1.attach(self._listeners)

    def __call__(self, event: Event) -> None:
        for fn in self._listeners[event]:
            fn(self.state)

    def listens(self, event: Event) -> bool:
        """True if some callback handles ``event``."""
        return bool(self._listeners[event])


def callback_order(cb: Any) -> int:
    """A callback's sort key: ``order``, or fastai v1's ``_order`` where the callback sets that and
    keeps the base class's ``order``."""
    order = getattr(cb, "order", 0)
    if order == Callback.order and "order" not in getattr(cb, "__dict__", {}) and hasattr(cb, "_order"):
        explicit = any("order" in vars(k) for k in type(cb).__mro__ if k is not Callback)
        if not explicit:
            return cb._order
    return order


def _overrides(cb: Callback, method: str) -> bool:
    fn = getattr(type(cb), method, None)
    return fn is not None and fn is not getattr(Callback, method, None)


def _to_cpu(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(o) for o in x)
    return x.detach().cpu() if hasattr(x, "detach") else x


class RecordOnCPU(Callback):
    """Keeps a CPU copy of the last batch's input and target (``self.input``, ``self.target``)."""

    def __init__(self) -> None:
        self.input: Any = None
        self.target: Any = None

    def on_batch_begin(self, state: RunState) -> None:
        self.input, self.target = _to_cpu(state.last_input), _to_cpu(state.last_target)
