"""Stop a fit whose loss or weights stop being finite numbers, before a checkpoint is overwritten.

Cheap by design: a training batch only keeps a reference to its loss (no kernel, no host
synchronisation); every ``check_every`` batches and at the end of every epoch the kept losses are
tested at once (one synchronisation), so the message still names the exact batch that first went
wrong. At the end of an epoch the validation loss and the weights are checked as well.

This callback's ``on_epoch_end`` runs before :class:`~learnkit.callbacks.tracking.SaveModelCallback`'s
(lower ``order``), so a diverged epoch never reaches a checkpoint: the last good one survives.
After the stop, ``stopped_at`` and ``message`` say where; the fit itself ends normally (a
``CancelFit``), and the command line turns it into an error.

Example:
    >>> nan = TerminateOnNaN(learn, check_every=50)
    >>> learn.fit(10, 1e-1, callbacks=[nan])
    >>> nan.message  # e.g. 'the loss became NaN at epoch 3, batch 17 ...'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from learnkit.callback import CancelFit, LearnerCallback, RunState
from learnkit.distributed import is_distributed

if TYPE_CHECKING:
    from learnkit.learner import Learner


class TerminateOnNaN(LearnerCallback):
    """End the fit when the training loss (or, at an epoch's end, the validation loss or a weight)
    is NaN or infinite.

    Args:
        learn: the Learner.
        check_every: read the device-side flag every this many training batches (``None``: only
            at the end of each epoch). Smaller reacts sooner and costs one host sync per check.

    Attributes:
        stopped_at: ``(epoch, batch)`` (from 0) of the first non-finite training loss, or
            ``(epoch, None)`` for a problem found at an epoch's end; None while all is well.
        message: one line saying what went wrong and where.
    """

    order = 40  # after the Recorder and metrics have their values, before SaveModelCallback (50)

    def __init__(self, learn: Learner, check_every: int | None = 50):
        super().__init__(learn)
        self.check_every = None if not check_every else max(1, int(check_every))
        self.stopped_at: tuple[int, int | None] | None = None
        self.message: str | None = None
        self._pending: list[torch.Tensor] = []  # the losses since the last check, still on the device
        self._first_index = 0  # the batch index of _pending[0]

    def on_train_begin(self, state: RunState) -> None:
        self.stopped_at, self.message = None, None
        self._pending, self._first_index = [], 0

    def on_epoch_begin(self, state: RunState) -> None:
        self._pending, self._first_index = [], state.num_batch

    def on_batch_end(self, state: RunState) -> None:
        if not state.train or state.last_loss is None:
            return
        self._pending.append(state.last_loss.detach())  # no kernel, no sync: looked at in _check
        if self.check_every and len(self._pending) >= self.check_every:
            self._check_losses(state)

    def _first_bad_batch(self) -> int | None:
        """The batch index of the first non-finite loss since the last check (one sync), or None."""
        first = -1
        if self._pending:
            bad = (~torch.isfinite(torch.stack([loss.float().reshape(()) for loss in self._pending]))).int()
            first = int(torch.where(bad.any(), bad.argmax() + self._first_index, -1))
        self._first_index += len(self._pending)
        self._pending = []
        if is_distributed():
            first = _earliest_over_ranks(first)
        return first if first >= 0 else None

    def _check_losses(self, state: RunState) -> None:
        batch = self._first_bad_batch()
        if batch is not None:
            self._stop(state.epoch, batch, "the training loss became NaN or infinite")

    def on_epoch_end(self, state: RunState) -> None:
        self._check_losses(state)
        valid_loss = state.last_metrics[0] if state.last_metrics else None
        if valid_loss is not None and not math.isfinite(valid_loss):
            self._stop(state.epoch, None, "the validation loss is NaN or infinite")
        if not weights_finite(self.learn.model):
            self._stop(state.epoch, None, "the weights hold NaN or infinite values")

    def _stop(self, epoch: int, batch: int | None, what: str) -> None:
        where = f"the end of epoch {epoch}"  # epochs and batches numbered from 0, as history.csv
        if batch is not None:
            where = f"epoch {epoch}, batch {batch}"
        self.stopped_at = (epoch, batch)
        self.message = f"training diverged: {what} at {where} (try a lower learning rate)"
        raise CancelFit(self.message)


def weights_finite(model: torch.nn.Module) -> bool:
    """True when every floating-point parameter and buffer of ``model`` is finite (one sync)."""
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()]
    if not tensors:
        return True
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def _earliest_over_ranks(first: int) -> int:
    """The smallest non-negative ``first`` of all ranks (-1 if none), so every rank stops together."""
    import torch.distributed as dist

    never = 2.0**62
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([float(first) if first >= 0 else never], dtype=torch.float64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    found = float(value.item())
    return int(found) if found < never else -1
