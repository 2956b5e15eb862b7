"""Mixup (Zhang et al., 2017) as fastai v1 runs it: :class:`MixUpCallback` and :class:`MixUpLoss`.

Each training batch is blended with a permutation of itself: item ``i`` becomes
``lam_i * x_i + (1 - lam_i) * x_perm(i)`` with ``lam_i`` drawn from ``Beta(alpha, alpha)`` and
replaced by ``max(lam_i, 1 - lam_i)`` (so every item stays closest to itself). With ``stack_y``
the targets are not blended: the loss is ``lam_i * loss(out_i, y_i) + (1 - lam_i) * loss(out_i,
y_perm(i))`` per item, then reduced as the original loss reduces. Validation is untouched.

The draws of batch ``b`` of epoch ``e`` depend only on ``(seed, e, b)``, so a resumed run (which
restores the callback's seed from the checkpoint) mixes exactly as the uninterrupted one.

Example:
    >>> learn = Learner(data, model).mixup(alpha=0.4)
    >>> learn.fit_one_cycle(5, 1e-3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from learnkit.callback import LearnerCallback, RunState
from learnkit.errors import UsageError
from learnkit.loop import unreduced_loss

if TYPE_CHECKING:
    from learnkit.learner import Learner


class MixUpLoss:
    """Wraps a loss for mixup with ``stack_y``; the wrapped loss object is never changed.

    Called as ``loss(out, y, y_perm, lam)`` it returns the per-item blend of ``loss(out, y)`` and
    ``loss(out, y_perm)`` weighted by ``lam``, reduced as the wrapped loss reduces (``mean`` unless
    its ``reduction`` says otherwise); called as ``loss(out, y)`` it is the wrapped loss itself.
    """

    def __init__(self, loss_func: Callable):
        self.loss_func = loss_func
        self.per_item = unreduced_loss(loss_func)  # a copy with reduction='none'
        self.reduction = getattr(loss_func, "reduction", "mean")

    def __call__(self, out: torch.Tensor, y: Any, y_perm: Any = None, lam: torch.Tensor | None = None):
        if y_perm is None:
            return self.loss_func(out, y)
        loss1, loss2 = self.per_item(out, y), self.per_item(out, y_perm)
        lam = lam.to(device=loss1.device, dtype=loss1.dtype).view(-1, *([1] * (loss1.ndim - 1)))
        blended = loss1 * lam + loss2 * (1 - lam)
        if self.reduction == "sum":
            return blended.sum()
        if self.reduction == "none":
            return blended
        return blended.mean()

    def __repr__(self) -> str:
        return f"MixUpLoss({self.loss_func!r})"


class MixUpCallback(LearnerCallback):
    """Mixup on training batches.

    Args:
        learn: the Learner.
        alpha: the Beta distribution's parameter (both of them).
        stack_x: pass ``[x, x_perm, lam]`` to the model instead of the blended input (a model that
            mixes inside, as in fastai v1).
        stack_y: blend the losses of both targets per item (:class:`MixUpLoss`, set on the run only
            for the fit); else the targets themselves are blended as floats (soft targets, for a
            loss that takes them).
        seed: the base of every batch's draws; default: drawn from torch's global RNG now. It is
            saved with checkpoints (``state_dict``), so a resumed run mixes as the original did.

    Example:
        >>> learn.fit(3, 1e-3, callbacks=[MixUpCallback(learn, alpha=0.2)])
    """

    def __init__(
        self,
        learn: Learner,
        alpha: float = 0.4,
        stack_x: bool = False,
        stack_y: bool = True,
        seed: int | None = None,
    ):
        super().__init__(learn)
        if not alpha > 0:
            raise UsageError(f"mixup alpha must be > 0, got {alpha}")
        self.alpha, self.stack_x, self.stack_y = float(alpha), stack_x, stack_y
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed)
        self._loss_func: Callable | None = None

    def draw(self, epoch: int, batch: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lam, perm)`` of batch ``batch`` of ``epoch`` with ``n`` items (float64 on the CPU).

        The draws come from a NumPy generator seeded by ``(seed, epoch, batch)`` alone (torch has no
        public Beta sampler that takes a generator); the global RNGs are not touched.
        """
        rng = np.random.default_rng([self.seed, int(epoch), int(batch)])
        lam = rng.beta(self.alpha, self.alpha, size=n)
        lam = np.maximum(lam, 1 - lam)
        return torch.from_numpy(lam), torch.from_numpy(rng.permutation(n))

    def on_train_begin(self, state: RunState) -> None:
        if self.stack_y:
            self._loss_func = state.loss_func
            state.loss_func = MixUpLoss(state.loss_func)

    def on_batch_begin(self, state: RunState) -> None:
        if not state.train:
            return
        x, y = state.last_input, state.last_target
        lam, perm = self.draw(state.epoch, state.num_batch, y.shape[0])
        # non_blocking: a blocking copy to a GPU would first wait for the previous batch's work
        perm = perm.to(y.device, non_blocking=True)
        if self.stack_x:
            state.last_input = [x, x[perm], lam.to(device=x.device, dtype=torch.float32, non_blocking=True)]
        else:
            x = x if x.is_floating_point() else x.float()
            w = lam.to(device=x.device, dtype=x.dtype, non_blocking=True).view(-1, *([1] * (x.ndim - 1)))
            state.last_input = x * w + x[perm] * (1 - w)
        if self.stack_y:
            state.last_target = [y, y[perm], lam.to(device=y.device, dtype=torch.float32, non_blocking=True)]
        else:
            y = y if y.is_floating_point() else y.float()
            w = lam.to(device=y.device, dtype=y.dtype, non_blocking=True).view(-1, *([1] * (y.ndim - 1)))
            state.last_target = y * w + y[perm] * (1 - w)

    def on_train_end(self, state: RunState) -> None:
        if self._loss_func is not None:
            state.loss_func, self._loss_func = self._loss_func, None

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])

    def __repr__(self) -> str:
        return f"MixUpCallback(alpha={self.alpha}, stack_x={self.stack_x}, stack_y={self.stack_y})"
