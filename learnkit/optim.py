"""The optimizer wrapper: learning rate, momentum and weight decay per layer group.

Each layer group becomes two parameter groups of the torch optimizer: its weights, and its norm
layers' parameters plus biases, so ``bn_wd=False`` can spare the latter. With ``true_wd`` the decay
is decoupled (AdamW style: ``p -= lr * wd * p`` before the step, only for parameters that have a
gradient, so frozen layers never move); otherwise it is L2, the optimizer's own ``weight_decay``.
An optimizer that decouples weight decay itself (torch's Adam family: a ``decoupled_weight_decay``
setting) is asked to, which is the same update done inside its own step, with no extra pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from learnkit.errors import UsageError
from learnkit.layers import params_of

LRLike = float | Sequence[float] | slice


def even_mults(start: float, stop: float, n: int) -> list[float]:
    """``n`` values from ``start`` to ``stop``, evenly spaced on a log scale."""
    if n == 1:
        return [float(stop)]
    step = (stop / start) ** (1 / (n - 1))
    return [float(start * step**i) for i in range(n)]


def lr_range(lr: LRLike, n_groups: int) -> list[float]:
    """One value per layer group from a float, a sequence or a slice.

    ``slice(a, b)``: geometric from a to b; ``slice(b)``: ``b/10`` for every group but the last,
    which gets ``b``; a float: the same for all; a sequence: as given (its length must match, but
    a one-element sequence is repeated for every group, as fastai v1's ``listify`` does).

    >>> lr_range(slice(1e-3), 3)
    [0.0001, 0.0001, 0.001]
    """
    if isinstance(lr, slice):
        if lr.stop is None:
            raise UsageError("a learning-rate slice needs an end value, e.g. 1e-5:1e-3")
        if lr.start is None:
            return [lr.stop / 10] * (n_groups - 1) + [float(lr.stop)]
        return even_mults(lr.start, lr.stop, n_groups)
    if isinstance(lr, (list, tuple)) or (isinstance(lr, torch.Tensor) and lr.ndim == 1):
        values = [float(v) for v in lr]
        if len(values) == 1:
            values = values * n_groups
        if len(values) != n_groups:
            raise UsageError(f"got {len(values)} values for {n_groups} layer groups")
        return values
    return [float(lr)] * n_groups


def _check_finite(values: list[float], what: str) -> None:
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise UsageError(f"{what} must be finite and >= 0, got {values}")


def AdamW(params: Any, lr: float = 1e-3, **kwargs: Any) -> torch.optim.Adam:  # noqa: N802 (fastai's name)
    """The default ``opt_func``: torch's Adam with fastai v1's betas (0.9, 0.99).

    Weight decay is decoupled by :class:`OptimWrapper` (``true_wd``), as in fastai. Where every
    parameter sits on a CPU or CUDA device, torch's fused kernel does the step (unless ``fused`` or
    ``foreach`` is given): one pass over all tensors instead of one per tensor. For resnet18 on a
    CPU thread, a step took 17 ms fused against 91-101 ms (foreach / per-tensor; bench/README.md).
    """
    params = list(params)  # a generator (model.parameters()) is read twice: here and by Adam
    kwargs.setdefault("betas", (0.9, 0.99))
    if "fused" not in kwargs and "foreach" not in kwargs and _fusable(params):
        kwargs["fused"] = True
    return torch.optim.Adam(params, lr=lr, **kwargs)


def _fusable(params: Any) -> bool:
    """Whether torch's fused Adam takes these parameters (or parameter groups)."""
    tensors = [t for g in params for t in (g["params"] if isinstance(g, dict) else [g])]
    return bool(tensors) and all(
        t.device.type in ("cpu", "cuda") and torch.is_floating_point(t) for t in tensors
    )


def match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (Adam's moments...) its parameter's memory layout.

    torch's fused Adam walks a parameter and its state as flat memory. A channels-last weight with
    contiguous (NCHW) moments -- what loading a saved state, or ``to_channels_last`` after a fit,
    leaves -- got wrong updates with no error (torch 2.14 on the CPU; ``tests/core/test_lean_loop.py``).
    """
    for group in opt.param_groups:
        for p in group["params"]:
            state = opt.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


class OptimWrapper:
    """A torch optimizer over layer groups with per-group ``lr``, ``mom``, ``wd`` properties.

    Args:
        opt_func: makes the optimizer from parameter groups, e.g. ``partial(Adam, betas=(0.9, 0.99))``.
        layer_groups: the modules whose parameters form the groups.
        lr, wd: a float, per-group sequence or slice.
        true_wd: decoupled weight decay (True) or L2 (False).
        bn_wd: whether norm layers' parameters and biases get weight decay.
    """

    def __init__(
        self,
        opt_func: Callable,
        layer_groups: Sequence[nn.Module],
        lr: LRLike = 3e-3,
        wd: LRLike = 0.0,
        true_wd: bool = True,
        bn_wd: bool = True,
    ):
        self.true_wd, self.bn_wd = true_wd, bn_wd
        self.n_groups = len(layer_groups)
        decay, no_decay = params_of(layer_groups)
        groups = []
        for d, nd in zip(decay, no_decay):
            groups += [{"params": d}, {"params": nd}]
        first_lrs = lr_range(lr, self.n_groups)
        _check_finite(first_lrs, "learning rates")
        self.opt = opt_func(groups, lr=first_lrs[0])
        self._has_betas = "betas" in self.opt.param_groups[0]
        self._has_mom = "momentum" in self.opt.param_groups[0]
        # the optimizer decays inside its step (same update, before its moments), saving a pass
        self._native_wd = true_wd and "decoupled_weight_decay" in self.opt.param_groups[0]
        self.lr = lr
        self.wd = wd

    # --- the optimizer interface (what the loop and GradScaler use) ---
    @property
    def param_groups(self) -> list[dict]:
        return self.opt.param_groups

    @property
    def state(self) -> Any:
        return self.opt.state

    def step(self, closure: Callable | None = None) -> None:
        """Decoupled weight decay (``true_wd``), then the optimizer's step."""
        if self.true_wd and not self._native_wd:
            with torch.no_grad():
                for i, group in enumerate(self.opt.param_groups):
                    wd = self._wds[i // 2]
                    if wd == 0 or (i % 2 == 1 and not self.bn_wd):
                        continue
                    params = [p for p in group["params"] if p.grad is not None]
                    if params:
                        torch._foreach_mul_(params, 1 - group["lr"] * wd)
        self.opt.step(closure) if closure is not None else self.opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)
        match_state_layout(self.opt)

    # --- hyper-parameters per layer group ---
    @property
    def lrs(self) -> list[float]:
        return [self.opt.param_groups[2 * i]["lr"] for i in range(self.n_groups)]

    @property
    def lr(self) -> float:
        """The last layer group's learning rate (the head's)."""
        return self.lrs[-1]

    @lr.setter
    def lr(self, value: LRLike) -> None:
        values = lr_range(value, self.n_groups)
        _check_finite(values, "learning rates")
        for i, v in enumerate(values):
            self.opt.param_groups[2 * i]["lr"] = self.opt.param_groups[2 * i + 1]["lr"] = v

    @property
    def moms(self) -> list[float]:
        if self._has_betas:
            return [self.opt.param_groups[2 * i]["betas"][0] for i in range(self.n_groups)]
        if self._has_mom:
            return [self.opt.param_groups[2 * i]["momentum"] for i in range(self.n_groups)]
        return [0.0] * self.n_groups

    @property
    def mom(self) -> float:
        """Momentum of the last group: SGD's ``momentum`` or Adam's ``beta1``."""
        return self.moms[-1]

    @mom.setter
    def mom(self, value: LRLike) -> None:
        values = lr_range(value, self.n_groups)
        for i, v in enumerate(values):
            for group in self.opt.param_groups[2 * i : 2 * i + 2]:
                if self._has_betas:
                    group["betas"] = (v, group["betas"][1])
                elif self._has_mom:
                    group["momentum"] = v

    @property
    def wds(self) -> list[float]:
        return list(self._wds)

    @property
    def wd(self) -> float:
        return self._wds[-1]

    @wd.setter
    def wd(self, value: LRLike) -> None:
        self._wds = lr_range(value, self.n_groups)
        _check_finite(self._wds, "weight decay")
        for i, wd in enumerate(self._wds):
            for j, group in enumerate(self.opt.param_groups[2 * i : 2 * i + 2]):
                if "decoupled_weight_decay" in group:  # AdamW too: L2 when true_wd is off
                    group["decoupled_weight_decay"] = self.true_wd
                if self._native_wd:
                    group["weight_decay"] = 0.0 if j == 1 and not self.bn_wd else wd
                elif "weight_decay" in group:
                    l2 = 0.0 if self.true_wd or (j == 1 and not self.bn_wd) else wd
                    group["weight_decay"] = l2

    def hypers(self) -> dict:
        """The per-group hyper-parameters, JSON-able (stored with checkpoints)."""
        return {
            "lrs": self.lrs,
            "moms": self.moms,
            "wds": self.wds,
            "true_wd": self.true_wd,
            "bn_wd": self.bn_wd,
        }

    def __repr__(self) -> str:
        return f"OptimWrapper({type(self.opt).__name__}, {self.n_groups} groups, lrs={self.lrs})"
