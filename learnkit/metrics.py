"""Metrics: plain functions ``metric(output, target) -> tensor`` (a batch mean), and the callback
that averages them over a validation set on the device (weighted by batch size, one sync at the end).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from learnkit.callback import Callback, RunState


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Fraction of items whose arg-max class equals the target."""
    return (output.argmax(dim=1) == target).float().mean()


def error_rate(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - accuracy``."""
    return 1 - accuracy(output, target)


def top_k_accuracy(output: torch.Tensor, target: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Fraction of items whose target is among the ``k`` highest scores."""
    k = min(k, output.shape[1])
    top = output.topk(k, dim=1).indices
    return (top == target.unsqueeze(1)).any(dim=1).float().mean()


def accuracy_thresh(
    output: torch.Tensor, target: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> torch.Tensor:
    """Multi-label accuracy (fastai v1): the share of (item, class) pairs whose thresholded
    probability agrees with the 0/1 target."""
    probs = output.sigmoid() if sigmoid else output
    return ((probs > thresh) == target.bool()).float().mean()


def fbeta(
    output: torch.Tensor,
    target: torch.Tensor,
    thresh: float = 0.2,
    beta: float = 2.0,
    eps: float = 1e-9,
    sigmoid: bool = True,
) -> torch.Tensor:
    """fastai v1's multi-label F-beta: per item, from the classes above ``thresh``, then averaged."""
    beta2 = beta**2
    pred = ((output.sigmoid() if sigmoid else output) > thresh).float()
    true = target.float()
    tp = (pred * true).sum(dim=1)
    prec = tp / (pred.sum(dim=1) + eps)
    rec = tp / (true.sum(dim=1) + eps)
    return ((prec * rec) / (prec * beta2 + rec + eps) * (1 + beta2)).mean()


MULTI_LABEL_METRICS = ("accuracy_thresh", "fbeta")
"""The metrics a multi-label run records by default."""


def metric_name(fn: Callable) -> str:
    """A metric's display name: its ``__name__``, or the wrapped function's for a partial."""
    return getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", type(fn).__name__)


class AverageMetric(Callback):
    """Averages ``fn(output, target)`` over the validation batches, weighted by batch size.

    The sum stays a device tensor until ``on_epoch_end``, which appends the value to
    ``state.last_metrics``. A metric function may instead be a Callback of its own (e.g. one that
    needs the whole set); it is then used as is.
    """

    order = -100  # before the Recorder and tracking callbacks read last_metrics

    def __init__(self, fn: Callable):
        self.fn, self.name = fn, metric_name(fn)
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def on_epoch_begin(self, state: RunState) -> None:
        self.total, self.count = 0.0, 0

    def on_batch_end(self, state: RunState) -> None:
        if state.train:
            return
        target = state.last_target[0] if isinstance(state.last_target, (list, tuple)) else state.last_target
        bs = target.shape[0]
        self.total = self.total + self.fn(state.last_output.float(), target).detach() * bs
        self.count += bs

    def reduce(self) -> tuple[torch.Tensor | float, int]:
        """(sum, count) of this process; distributed runs add those of every rank."""
        from learnkit.distributed import all_reduce_sum

        return all_reduce_sum(self.total, self.count)

    def on_epoch_end(self, state: RunState) -> None:
        if state.last_metrics is None:
            return
        total, count = self.reduce()
        state.last_metrics.append(float(total) / count if count else float("nan"))
