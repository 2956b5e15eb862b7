"""Metrics: plain functions ``metric(output, target) -> tensor`` (a batch mean), and the callback
that averages them over a validation set on the device (weighted by batch size, one sync at the end).

The functions are fastai v1's (``fastai/metrics.py``), with its formulas and names: ``accuracy``,
``error_rate``, ``top_k_accuracy``, ``accuracy_thresh``, ``fbeta``, ``dice`` (binary masks, v1's),
``foreground_acc``, ``exp_rmspe``, ``mae``/``mean_absolute_error``, ``mse``/``mean_squared_error``,
``rmse``/``root_mean_squared_error``, ``msle``, ``explained_variance``, ``r2_score``. As in v1, the
column of an alias is the function's own name (``mse`` shows as ``mean_squared_error``), and a
metric that is not a mean (``r2_score``, ``rmse``...) is averaged over batches (v1's classes
``R2Score``/``RMSE`` that score the whole set are not here). The multi-class, whole-set dice of
segmentation runs is :func:`learnkit.seg_metrics.multi_dice` / :class:`learnkit.seg_metrics.Dice`.
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
    """Fraction of items whose target is among the ``k`` highest scores (``k`` is capped at the
    number of classes, where v1 raises)."""
    k = min(k, output.shape[1])
    top = output.topk(k, dim=1).indices
    return (top == target.unsqueeze(1)).any(dim=1).float().mean()


def accuracy_thresh(
    output: torch.Tensor, target: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> torch.Tensor:
    """Multi-label accuracy (fastai v1): the share of (item, class) pairs whose thresholded
    probability agrees with the 0/1 target."""
    probs = output.sigmoid() if sigmoid else output
    return ((probs > thresh).to(torch.uint8) == target.to(torch.uint8)).float().mean()


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


def dice(output: torch.Tensor, target: torch.Tensor, iou: bool = False, eps: float = 1e-8) -> torch.Tensor:
    """fastai v1's dice for a binary target: per item, ``2 |P & T| / (|P| + |T|)`` with ``P`` the
    arg-max over the class dimension (class 1 = foreground) and ``T`` the 0/1 mask; ``iou=True``
    gives ``|P & T| / |P | T|``; an item with an empty prediction and an empty mask scores 1; the
    batch's mean. (For several classes, see :func:`learnkit.seg_metrics.multi_dice`.)"""
    n = target.shape[0]
    pred = output.argmax(dim=1).view(n, -1)
    targ = target.view(n, -1)
    intersect = (pred * targ).sum(dim=1).float()
    union = (pred + targ).sum(dim=1).float()
    score = intersect / (union - intersect + eps) if iou else 2.0 * intersect / union
    score = torch.where(union == 0, torch.ones_like(score), score)
    return score.mean()


def foreground_acc(output: torch.Tensor, target: torch.Tensor, void_code: int) -> torch.Tensor:
    """Accuracy over the pixels whose target is not ``void_code`` (v1's, e.g. CamVid's void)."""
    target = target.squeeze(1)
    mask = target != void_code
    return (output.argmax(dim=1)[mask] == target[mask]).float().mean()


def _flatten_check(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both flattened; they must hold as many elements (v1's ``flatten_check``; private here, so the
    command line's ``--metrics`` does not offer it)."""
    output, target = output.contiguous().view(-1), target.contiguous().view(-1)
    if len(output) != len(target):
        raise ValueError(f"expected output and target of the same size, got {len(output)} and {len(target)}")
    return output, target


def exp_rmspe(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Root mean squared percentage error of ``exp(pred)`` against ``exp(targ)`` (log targets)."""
    pred, targ = _flatten_check(pred, targ)
    pred, targ = torch.exp(pred), torch.exp(targ)
    return torch.sqrt((((targ - pred) / targ) ** 2).mean())


def mean_absolute_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    pred, targ = _flatten_check(pred, targ)
    return (targ - pred).abs().mean()


def mean_squared_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    pred, targ = _flatten_check(pred, targ)
    return torch.nn.functional.mse_loss(pred, targ)


def root_mean_squared_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Root of the mean squared error (of the batch; the epoch's value is a mean of those)."""
    return mean_squared_error(pred, targ).sqrt()


def mean_squared_logarithmic_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared error of ``log(1 + x)``."""
    pred, targ = _flatten_check(pred, targ)
    return torch.nn.functional.mse_loss(torch.log(1 + pred), torch.log(1 + targ))


def explained_variance(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """``1 - var(targ - pred) / var(targ)``."""
    pred, targ = _flatten_check(pred, targ)
    return 1 - torch.var(targ - pred) / torch.var(targ)


def r2_score(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """The coefficient of determination, ``1 - SS_res / SS_tot``."""
    pred, targ = _flatten_check(pred, targ)
    return 1 - ((targ - pred) ** 2).sum() / ((targ - targ.mean()) ** 2).sum()


mse = mean_squared_error
mae = mean_absolute_error
rmse = root_mean_squared_error
msle = mean_squared_logarithmic_error


MULTI_LABEL_METRICS = ("accuracy_thresh", "fbeta")
"""The metrics a multi-label run records by default."""


def metric_name(fn: Callable) -> str:
    """A metric's display name: its ``__name__``, the wrapped function's for a partial, else (a
    callback, as v1) its ``name`` or its snake-cased class name."""
    from learnkit.callback import camel2snake

    name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None)
    return name or getattr(fn, "name", None) or camel2snake(type(fn).__name__)


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
