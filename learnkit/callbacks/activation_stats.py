"""Record the mean and standard deviation of every layer's activations while training (fastai v1's
``ActivationStats``, on v1's ``HookCallback``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from learnkit.callback import LearnerCallback, RunState
from learnkit.hooks import Hooks
from learnkit.layers import flatten_model

if TYPE_CHECKING:
    from learnkit.learner import Learner


class HookCallback(LearnerCallback):
    """Registers :meth:`hook` on ``modules`` (default: every module of the model that has
    parameters) at ``on_train_begin`` and removes it at ``on_train_end`` (with ``do_remove``)."""

    def __init__(self, learn: Learner, modules: Sequence[nn.Module] | None = None, do_remove: bool = True):
        super().__init__(learn)
        self.modules, self.do_remove = modules, do_remove
        self.hooks: Hooks | None = None

    def hook(self, m: nn.Module, i: Any, o: Any) -> Any:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def on_train_begin(self, state: RunState) -> None:
        if not self.modules:
            self.modules = [m for m in flatten_model(self.learn.model) if any(True for _ in m.parameters())]
        self.hooks = Hooks(self.modules, self.hook)

    def on_train_end(self, state: RunState) -> None:
        if self.do_remove:
            self.remove()

    def remove(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()


class ActivationStats(HookCallback):
    """After a fit, :attr:`stats` is a tensor ``2 x n_modules x n_batches``: the mean (``[0]``) and
    standard deviation (``[1]``) of each hooked module's output at each training batch, as v1's.

    The means stay on the device while training and are read once, at the end of the fit (v1 reads
    them every batch)."""

    def on_train_begin(self, state: RunState) -> None:
        super().on_train_begin(state)
        self.stats: Any = []

    def hook(self, m: nn.Module, i: Any, o: Any) -> torch.Tensor:
        o = o.float()
        return torch.stack([o.mean(), o.std()])

    def on_batch_end(self, state: RunState) -> None:
        if state.train and self.hooks is not None:
            self.stats.append(torch.stack(self.hooks.stored))

    def on_train_end(self, state: RunState) -> None:
        super().on_train_end(state)
        if isinstance(self.stats, list):
            stats = (
                torch.stack(self.stats).cpu() if self.stats else torch.empty(0, len(self.modules or []), 2)
            )
            self.stats = stats.permute(2, 1, 0)  # (batch, module, stat) -> (stat, module, batch)
