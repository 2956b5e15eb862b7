"""Classification losses the training commands build: label smoothing, class weights, multi-label;
and the activation that turns a loss's model outputs into predictions (``default_activation``).

Example:
    >>> loss = classification_loss(label_smoothing=0.1, class_weights=[1.0, 3.0])
    >>> loss.label_smoothing, loss.weight.tolist()
    (0.1, [1.0, 3.0])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from learnkit.errors import DataError, UsageError

CLASS_WEIGHTS = ("balanced",)


def balanced_class_weights(labels: Sequence[int] | torch.Tensor, n_classes: int) -> list[float]:
    """scikit-learn's ``balanced`` weights: ``n_samples / (n_classes * count_c)`` per class ``c``.

    A class with no training item gets weight 0 (it cannot be learnt; its loss never occurs).

    Example:
        >>> balanced_class_weights([0, 0, 0, 1], 2)
        [0.6666666666666666, 2.0]
    """
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=n_classes).tolist()
    total = sum(counts)
    if total == 0:
        raise DataError("no training labels to weight the classes by")
    return [total / (n_classes * c) if c else 0.0 for c in counts]


def classification_loss(
    label_smoothing: float = 0.0, class_weights: Sequence[float] | None = None, multi_label: bool = False
) -> nn.Module:
    """Cross-entropy (single label) or BCE-with-logits (multi-label) with the given options.

    Args:
        label_smoothing: in ``[0, 1)``; the target's mass moved uniformly over the classes
            (``CrossEntropyLoss(label_smoothing)``); for multi-label, targets become
            ``y * (1 - eps) + eps / 2``.
        class_weights: one weight per class (``balanced_class_weights``), or None.
        multi_label: one sigmoid per class instead of a softmax over them.
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise UsageError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    weight = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
    if multi_label:
        return SmoothBCEWithLogits(label_smoothing, pos_weight=weight)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(label_smoothing))


class SmoothBCEWithLogits(nn.BCEWithLogitsLoss):
    """``BCEWithLogitsLoss`` on float targets, optionally smoothed towards 1/2 by ``eps``."""

    def __init__(self, eps: float = 0.0, pos_weight: torch.Tensor | None = None, reduction: str = "mean"):
        super().__init__(pos_weight=pos_weight, reduction=reduction)
        self.eps = float(eps)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        if self.eps:
            target = target * (1 - self.eps) + self.eps / 2
        return super().forward(input.float(), target)


def default_activation(loss_func: Any) -> Callable | None:
    """The activation that turns a model's outputs into predictions for ``loss_func``:
    softmax for cross-entropy, sigmoid for BCE-with-logits, none otherwise (regression)."""
    base = getattr(loss_func, "func", loss_func)
    name = getattr(base, "__name__", type(base).__name__).lower().replace("_", "")
    if isinstance(base, nn.BCEWithLogitsLoss) or "binarycrossentropywithlogits" in name:
        return torch.sigmoid  # checked first: its name contains "crossentropy" too
    if isinstance(base, nn.CrossEntropyLoss) or "crossentropy" in name:
        return partial(torch.softmax, dim=1)
    return None
