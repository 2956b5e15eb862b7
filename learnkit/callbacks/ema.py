"""An exponential moving average of the weights: :class:`EMACallback` (``--ema DECAY``).

After every optimizer step the average moves towards the trained weights
(``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(decay)``; buffers such as
batch-norm statistics are averaged too). Which weights are where:

- during an epoch's training batches the model holds the *raw* (trained) weights;
- for validation and the epoch's end the model holds the *EMA* weights, so the validation
  metrics, ``best`` and ``last`` (the model files) are those of the EMA; after the fit the model
  keeps them, so ``predict``/``validate`` on the checkpoint use the EMA;
- the raw weights and the average both go into the optimizer file (``last.opt.safetensors``),
  under ``callbacks.EMACallback.raw.*`` / ``.ema.*``, so ``--resume`` continues training the raw
  weights and averaging exactly where it stopped.

Example:
    >>> learn.fit_one_cycle(5, 1e-3, callbacks=[EMACallback(learn, decay=0.999)])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from learnkit.callback import LearnerCallback, RunState
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner


class EMACallback(LearnerCallback):
    """Keep an EMA of the weights; validate, save and end with it (see the module doc).

    Args:
        learn: the Learner.
        decay: the average's decay per optimizer step, in (0, 1) (timm's default is 0.9998).
    """

    order = -50  # first at the epoch's end: the savers must find the EMA weights in the model

    def __init__(self, learn: Learner, decay: float = 0.999):
        super().__init__(learn)
        if not (isinstance(decay, (int, float)) and 0 < decay < 1):
            raise UsageError(f"ema decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        ema_fn = get_ema_multi_avg_fn(self.decay)
        self.averaged = AveragedModel(learn.model, multi_avg_fn=ema_fn, use_buffers=True)
        self._raw: dict[str, torch.Tensor] | None = None  # the raw weights while the model holds the EMA

    # --- weights in and out of the model ---
    def _swap_in_ema(self) -> None:
        model = self.learn.model
        self._raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.averaged.module.state_dict())

    def _swap_out_ema(self) -> None:
        if self._raw is not None:
            self.learn.model.load_state_dict(self._raw)
            self._raw = None

    # --- events ---
    def on_epoch_begin(self, state: RunState) -> None:
        if state.opt is not None:  # a fit (Learner.validate runs these events with no optimizer)
            self._swap_out_ema()

    def on_step_end(self, state: RunState) -> None:
        if state.train and not state.skip_step:
            self.averaged.update_parameters(state.model)

    def on_validate_begin(self, state: RunState) -> None:
        if self._raw is None and state.opt is not None:
            if int(self.averaged.n_averaged) == 0:  # no step yet: the average is the model itself
                self.averaged.update_parameters(state.model)
            self._swap_in_ema()

    def on_epoch_end(self, state: RunState) -> None:
        self.on_validate_begin(state)  # an epoch without validation ends with the EMA too

    # --- checkpoints ---
    def raw_state(self) -> dict[str, torch.Tensor]:
        """The raw (trained) weights, wherever they are now."""
        return self._raw if self._raw is not None else dict(self.learn.model.state_dict())

    def state_dict(self) -> dict:
        tensors = {f"raw.{k}": v for k, v in self.raw_state().items()}
        tensors |= {f"ema.{k}": v for k, v in self.averaged.module.state_dict().items()}
        tensors["n_averaged"] = self.averaged.n_averaged.detach().clone()
        return {"decay": self.decay, "tensors": tensors}

    def load_state_dict(self, state: dict) -> None:
        tensors = state.get("tensors") or {}
        raw = {k[4:]: v for k, v in tensors.items() if k.startswith("raw.")}
        ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        if ema:
            self.averaged.module.load_state_dict(ema)
            self.averaged.n_averaged.copy_(tensors["n_averaged"])
        if raw:
            self._raw = None
            self.learn.model.load_state_dict(raw)

    def __repr__(self) -> str:
        return f"EMACallback(decay={self.decay})"
