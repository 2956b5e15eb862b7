"""The training recipes of a run, put on a built Learner: loss options, callbacks, compile, freezing.

:func:`apply_recipes` is where ``--label-smoothing``, ``--class-weights``, ``--mixup``,
``--cutmix``, ``--clip``, ``--accum``, ``--ema``, ``--compile`` and ``--freeze/--no-freeze`` act.
The callbacks join ``learn.callbacks``, so checkpoints keep their state (mixup/cutmix seeds, EMA
weights, half-accumulated gradients) and ``--resume`` continues them exactly.

Example:
    >>> apply_recipes(learn, label_smoothing=0.1, mixup=0.4, ema=0.999)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner


def apply_recipes(
    learn: Learner,
    *,
    label_smoothing: float = 0.0,
    class_weights: str | None = None,
    mixup: float | None = None,
    cutmix: float | None = None,
    clip: float | None = None,
    accum: int = 1,
    ema: float | None = None,
    compile: bool = False,
    freeze: bool | None = None,
) -> list[Any]:
    """Set the loss and attach the recipe callbacks to ``learn``; returns the callbacks added.

    Args:
        label_smoothing: cross-entropy label smoothing (0: none).
        class_weights: ``"balanced"``: loss weights ``n / (classes x count)`` from the training
            labels; None: unweighted.
        mixup, cutmix: the Beta parameter of mixup / CutMix (None: off); not both.
        clip: the largest gradient norm (None: no clipping).
        accum: batches per optimizer step (gradient accumulation).
        ema: the decay of an EMA of the weights (None: off); validation, ``best`` and ``last``
            then hold the average (see :mod:`learnkit.callbacks.ema`).
        compile: ``torch.compile`` the model (a warning and eager mode where it cannot).
        freeze: True/False freezes/unfreezes the body; None leaves the Learner's choice (a
            pretrained body starts frozen).
    """
    from learnkit.losses import CLASS_WEIGHTS, balanced_class_weights, classification_loss

    data = learn.data
    if mixup is not None and cutmix is not None:
        raise UsageError("give --mixup or --cutmix, not both")
    if class_weights is not None and class_weights not in CLASS_WEIGHTS:
        raise UsageError(f"unknown class weights {class_weights!r}: use {', '.join(CLASS_WEIGHTS)}")
    multi = bool(getattr(data, "multi_label", False))
    if getattr(data, "task", "classification") == "classification" and (
        label_smoothing or class_weights is not None or multi
    ):
        weights = None
        if class_weights == "balanced":
            weights = _balanced(data, balanced_class_weights, multi)
        learn.loss_func = classification_loss(label_smoothing, weights, multi).to(data.device)
    elif label_smoothing or class_weights is not None:
        raise UsageError("--label-smoothing and --class-weights apply to classification only")
    added = _callbacks(learn, mixup=mixup, cutmix=cutmix, clip=clip, accum=accum, ema=ema)
    learn.callbacks.extend(added)
    if freeze is True:
        learn.freeze()
    elif freeze is False:
        learn.unfreeze()
    if compile:
        from learnkit.compile import compile_model

        compile_model(learn.model, data.device)
    return added


def _balanced(data: Any, balanced_class_weights: Any, multi: bool) -> list[float]:
    """Balanced weights from the training set's labels (multi-label: each class's positives)."""
    labels = getattr(data.train_ds, "labels", None)
    if labels is None:
        raise UsageError("--class-weights balanced needs labelled training data")
    if multi:
        labels = [c for row in labels for c in row]
    return balanced_class_weights(labels, data.c)


def _callbacks(
    learn: Learner,
    *,
    mixup: float | None,
    cutmix: float | None,
    clip: float | None,
    accum: int,
    ema: float | None,
) -> list[Any]:
    added: list[Any] = []
    if mixup is not None:
        from learnkit.callbacks.mixup import MixUpCallback

        added.append(MixUpCallback(learn, alpha=mixup))
    if cutmix is not None:
        from learnkit.callbacks.cutmix import CutMixCallback

        added.append(CutMixCallback(learn, alpha=cutmix))
    if accum is not None and accum != 1:
        from learnkit.callbacks.accumulate import GradientAccumulation

        added.append(GradientAccumulation(learn, n=accum))
    if clip is not None:
        from learnkit.callbacks.clip_grad import GradientClipping

        added.append(GradientClipping(learn, clip=clip))
    if ema is not None:
        from learnkit.callbacks.ema import EMACallback

        added.append(EMACallback(learn, decay=ema))
    return added
