"""Numeric precision as a strategy object: how the loop runs the forward, backward and step.

The loop never asks "is this fp16?": it calls ``precision.autocast``, ``precision.backward`` and
``precision.step`` of whichever object the learner holds. fp32 does the plain thing; bf16 runs the
forward under ``torch.autocast``; fp16 adds a ``torch.amp.GradScaler`` (dynamic loss scaling).
Weights stay fp32 in every mode (the master copy), so a checkpoint is the same in each.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch


class Precision:
    """Full fp32: no autocast, no scaling."""

    name = "fp32"

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def unscale_(self, opt: Any) -> None:
        """Bring gradients to their true scale (before clipping); a no-op without scaling."""

    def step(self, opt: Any) -> None:
        opt.step()

    @property
    def loss_scale(self) -> float:
        return 1.0

    def state_dict(self) -> dict:
        return {"name": self.name}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore for fp32/bf16."""


class BF16(Precision):
    """bfloat16 autocast (CPU and CUDA): same exponent range as fp32, so no loss scaling."""

    name = "bf16"

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


class FP16(Precision):
    """float16 autocast with a loss scale: fixed, or dynamic (halved on overflow, grown when stable)."""

    name = "fp16"

    def __init__(self, loss_scale: float = 512.0, dynamic: bool = True, device: str = "cuda"):
        self.device = torch.device(device).type
        self.dynamic, self.fixed_scale = dynamic, float(loss_scale)
        self.scaler = torch.amp.GradScaler(self.device, init_scale=loss_scale, growth_interval=2000)
        self._unscaled = False

    def autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=device_type, dtype=torch.float16)

    def backward(self, loss: torch.Tensor) -> None:
        if self._unscaled:  # the last batch was unscaled but its step skipped: close that iteration
            self._update()
        self.scaler.scale(loss).backward()

    def _update(self) -> None:
        # a static scale skips overflowing steps like the dynamic one but never changes the scale
        self.scaler.update() if self.dynamic else self.scaler.update(self.fixed_scale)
        self._unscaled = False

    def unscale_(self, opt: Any) -> None:
        if not self._unscaled:
            self.scaler.unscale_(opt)
            self._unscaled = True

    def step(self, opt: Any) -> None:
        self.scaler.step(opt)  # skipped when the scaled gradients overflowed
        self._update()

    @property
    def loss_scale(self) -> float:
        scale = self.scaler.get_scale()
        return float(scale) if math.isfinite(scale) else 0.0

    def state_dict(self) -> dict:
        """The scaler's state (scale, growth tracker and settings): JSON-able numbers."""
        return {"name": self.name, "scaler": dict(self.scaler.state_dict())}

    def load_state_dict(self, state: dict) -> None:
        """Continue with a saved loss scale and growth tracker (a checkpoint's ``precision``)."""
        scaler = state.get("scaler")
        if scaler:
            scaler = dict(scaler)
            for key in _SCALER_INTS:  # torch wants ints here; JSON or an older writer may give floats
                if key in scaler:
                    scaler[key] = int(scaler[key])
            self.scaler.load_state_dict(scaler)


_SCALER_INTS = ("growth_interval", "_growth_tracker")


FP32 = Precision()


def make_precision(name: str, device: str | torch.device = "cpu", **kwargs: Any) -> Precision:
    """``'fp32' | 'bf16' | 'fp16'`` -> the strategy object."""
    if name == "fp32":
        return Precision()
    if name == "bf16":
        return BF16()
    if name == "fp16":
        return FP16(device=str(device), **kwargs)
    from learnkit.errors import UsageError

    raise UsageError(f"unknown precision {name!r}; choose fp32, bf16 or fp16")
