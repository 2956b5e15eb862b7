"""CutMix (Yun et al., 2019) as torchvision.transforms.v2.CutMix defines it: :class:`CutMixCallback`.

For each training batch one ``lam`` is drawn from ``Beta(alpha, alpha)`` and one box: its centre
uniform over the image, its sides ``sqrt(1 - lam)`` of the image's (clipped at the borders). The
box is pasted from the batch rolled by one (item ``i`` gets item ``i - 1``'s patch) and ``lam``
is then set to the share of the image left unpasted, ``1 - box area / image area``. The loss is
``lam * loss(out, y) + (1 - lam) * loss(out, y_rolled)``, through mixup's :class:`MixUpLoss`.

Draws depend only on ``(seed, epoch, batch)`` (a NumPy generator; the global RNGs are not
touched), and the seed is kept in checkpoints, so a resumed run cuts exactly as the original.

Example:
    >>> learn.fit_one_cycle(5, 1e-3, callbacks=[CutMixCallback(learn, alpha=1.0)])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from learnkit.callback import LearnerCallback, RunState
from learnkit.callbacks.mixup import MixUpLoss
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner


def cutmix_box(lam: float, height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """``(x1, y1, x2, y2)`` of the box for ``lam`` (torchvision v2 CutMix's rule), ``x2``/``y2`` excluded."""
    r_x, r_y = int(rng.integers(0, width)), int(rng.integers(0, height))
    r = 0.5 * float(np.sqrt(1.0 - lam))
    half_w, half_h = int(r * width), int(r * height)
    x1, y1 = max(r_x - half_w, 0), max(r_y - half_h, 0)
    x2, y2 = min(r_x + half_w, width), min(r_y + half_h, height)
    return x1, y1, x2, y2


class CutMixCallback(LearnerCallback):
    """CutMix on training batches (see the module doc).

    Args:
        learn: the Learner.
        alpha: the Beta distribution's parameter (torchvision's default is 1.0).
        seed: the base of every batch's draws; default: drawn from torch's global RNG now.
    """

    def __init__(self, learn: Learner, alpha: float = 1.0, seed: int | None = None):
        super().__init__(learn)
        if not alpha > 0:
            raise UsageError(f"cutmix alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed)
        self._loss_func: Callable | None = None

    def draw(self, epoch: int, batch: int, height: int, width: int) -> tuple[float, tuple[int, ...]]:
        """``(lam, box)`` of batch ``batch`` of ``epoch``: ``lam`` already adjusted to the box's area."""
        rng = np.random.default_rng([self.seed, int(epoch), int(batch), 1])
        lam = float(rng.beta(self.alpha, self.alpha))
        x1, y1, x2, y2 = cutmix_box(lam, height, width, rng)
        return 1.0 - (x2 - x1) * (y2 - y1) / (width * height), (x1, y1, x2, y2)

    def on_train_begin(self, state: RunState) -> None:
        self._loss_func = state.loss_func
        state.loss_func = MixUpLoss(state.loss_func)

    def on_batch_begin(self, state: RunState) -> None:
        if not state.train:
            return
        x, y = state.last_input, state.last_target
        lam, (x1, y1, x2, y2) = self.draw(state.epoch, state.num_batch, x.shape[-2], x.shape[-1])
        x = x.clone()
        x[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
        state.last_input = x
        lams = torch.full((y.shape[0],), lam, dtype=torch.float32, device=y.device)
        state.last_target = [y, y.roll(1, 0), lams]

    def on_train_end(self, state: RunState) -> None:
        if self._loss_func is not None:
            state.loss_func, self._loss_func = self._loss_func, None

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])

    def __repr__(self) -> str:
        return f"CutMixCallback(alpha={self.alpha})"
