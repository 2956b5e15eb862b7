"""The callback system: events, the run state callbacks share, and the handler that dispatches them.

A callback is an object with some of the ``on_*`` methods of :class:`Callback`; each receives the
one :class:`RunState` of the run and reads or changes it there (the input, the loss, the skip flags).
It stops a batch, an epoch or the whole fit by raising :class:`CancelBatch`, :class:`CancelEpoch` or
:class:`CancelFit`; the loop then calls the matching ``on_cancel_*`` event and carries on (or ends
the fit), so cleanup in ``on_epoch_end``/``on_train_end`` always runs.

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
        iteration: batches trained in the run so far (continues like ``epoch``).
        num_batch: index of the current batch in its epoch.
        train: True while training, False during validation.
        last_input, last_target, last_output, last_loss: the current batch and its results.
        last_metrics: ``[valid_loss, *metrics]`` after validation, else None.
        skip_backward, skip_step, skip_zero: set by a callback to skip that part of the step.
        skip_validate: set to skip the validation at the end of this epoch.
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
    iteration: int = 0
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
    exception: BaseException | None = None


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
    costs one empty loop.
    """

    def __init__(self, callbacks=(), state: RunState | None = None):
        self.callbacks = sorted((cb for cb in callbacks if cb is not None), key=lambda cb: cb.order)
        self.state = state if state is not None else RunState()
        self._listeners = {
            event: [getattr(cb, event.value) for cb in self.callbacks if _overrides(cb, event.value)]
            for event in Event
        }

    def __call__(self, event: Event) -> None:
        for fn in self._listeners[event]:
            fn(self.state)

    def listens(self, event: Event) -> bool:
        """True if some callback handles ``event``."""
        return bool(self._listeners[event])


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
