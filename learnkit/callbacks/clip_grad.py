"""Gradient clipping: :class:`GradientClipping`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from learnkit.callback import LearnerCallback, RunState
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner


class GradientClipping(LearnerCallback):
    """Clip the gradients' global norm to ``clip`` after each backward pass, before the step.

    Under fp16 the gradients are unscaled first (``state.precision.unscale_``), so ``clip`` bounds
    their true norm, not the loss-scaled one; an overflowing batch still has its step skipped.

    Args:
        learn: the Learner.
        clip: the largest gradient norm (over all parameters together, 2-norm).

    Example:
        >>> learn.clip_grad(0.1)  # or: learn.fit(1, callbacks=[GradientClipping(learn, 0.1)])
    """

    def __init__(self, learn: Learner, clip: float = 0.1):
        super().__init__(learn)
        if not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip > 0):
            raise UsageError(f"clip must be a finite number > 0, got {clip!r}")
        self.clip = float(clip)

    def on_backward_end(self, state: RunState) -> None:
        if not state.train or state.skip_backward or state.skip_step:
            return  # no step follows (e.g. inside an accumulation window): clip the summed gradients
        if state.precision is not None and state.opt is not None:
            state.precision.unscale_(state.opt)
        nn.utils.clip_grad_norm_(state.model.parameters(), self.clip)

    def __repr__(self) -> str:
        return f"GradientClipping(clip={self.clip})"
