"""Gradient accumulation: :class:`GradientAccumulation`, one optimizer step per ``n`` batches.

``--bs`` stays the batch of one forward pass; a step sees the gradients of ``n`` of them (an
effective batch of ``bs x n``), each batch's loss divided by ``n`` so the step is that of the mean
loss. Windows start at each epoch's first batch and the last batch of an epoch always steps, so no
gradient crosses an epoch's end (where checkpoints are written). Schedules (1cycle) still move
per *batch*: a step uses the rate and momentum of the batch that completes its window.

A run stopped inside a window (SIGINT) keeps the gradients summed so far in its checkpoint
(``state_dict`` tensors), so the resumed run steps exactly as the uninterrupted one.

Example:
    >>> learn.fit_one_cycle(5, 1e-3, callbacks=[GradientAccumulation(learn, n=4)])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from learnkit.callback import LearnerCallback, RunState
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner


class GradientAccumulation(LearnerCallback):
    """Sum the gradients of ``n`` batches, then take one optimizer step (see the module doc).

    Args:
        learn: the Learner.
        n: batches per optimizer step (1: every batch, as without this callback).
    """

    order = -20  # before clipping and the precision's step, which read skip_step

    def __init__(self, learn: Learner, n: int = 2):
        super().__init__(learn)
        if not (isinstance(n, int) and n >= 1):
            raise UsageError(f"accum must be an integer >= 1, got {n!r}")
        self.n = n

    def closes_window(self, state: RunState) -> bool:
        """True when the current batch is the last of its window (or of its epoch)."""
        return (state.num_batch + 1) % self.n == 0 or state.num_batch + 1 >= state.n_batches

    def on_backward_begin(self, state: RunState) -> None:
        if not state.train or self.n == 1:
            return
        state.last_loss = state.last_loss / self.n
        if not self.closes_window(state):
            state.skip_step = state.skip_zero = True

    def state_dict(self) -> dict:
        """The gradients summed so far in an open window (none between windows)."""
        params = self.learn.model.named_parameters()
        grads = {name: p.grad for name, p in params if p.grad is not None and p.requires_grad}
        return {"n": self.n, "tensors": grads} if grads else {"n": self.n}

    def load_state_dict(self, state: dict) -> None:
        grads = state.get("tensors") or {}
        params = dict(self.learn.model.named_parameters())
        for name, grad in grads.items():
            if name in params:
                p = params[name]
                p.grad = grad.to(device=p.device, dtype=p.dtype)

    def __repr__(self) -> str:
        return f"GradientAccumulation(n={self.n})"


def effective_batch(bs: int, n: int, world_size: int = 1) -> int:
    """Items per optimizer step: ``bs`` per forward, ``n`` forwards, on ``world_size`` processes."""
    return int(bs) * int(n) * int(world_size)
