"""Pixel metrics for segmentation: dice, IoU (per class and mean) and pixel accuracy.

Everything comes from one confusion matrix (rows: true class, columns: predicted class). For
class ``c`` with ``tp`` pixels right, ``fp`` predicted wrongly as ``c`` and ``fn`` of ``c`` missed:

- ``dice_c = 2 tp / (2 tp + fp + fn)``, ``iou_c = tp / (tp + fp + fn)``;
- a class absent from both the truth and the prediction has no score (``nan``), and the means
  (``dice``, ``iou``) are over the classes that have one; background counts as a class;
- ``pixel_accuracy = trace / total``.

Two ways to use them:

- as functions ``multi_dice(output, target)``: the value on one batch (``output`` the logits
  ``N x C x H x W``, or class indices ``N x H x W``);
- as Learner metrics: :func:`segmentation_metrics` gives callbacks (:class:`Dice`, :class:`IoU`,
  :class:`PixelAccuracy`) that add up the confusion matrix over the whole validation set, so the
  epoch's value is the data set's dice, not a mean of batch means.

Example:
    >>> learn = unet_learner(data, "resnet18", metrics=segmentation_metrics())  # doctest: +SKIP
    >>> learn.validate()  # [valid_loss, dice, iou, pixel_accuracy]  # doctest: +SKIP
"""

from __future__ import annotations

import torch

from learnkit.callback import Callback, RunState


def predicted_classes(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int | None]:
    """``(class indices like target, number of classes or None)`` from logits or indices.

    Logits ``N x C x H x W`` give their arg-max (``C`` classes); a single channel is a binary
    mask's logit (class 1 where it is positive, 2 classes); indices are used as they are.
    """
    if output.dim() == target.dim() + 1:
        n = output.shape[1]
        if n == 1:
            return (output[:, 0] > 0).long(), 2
        return output.argmax(dim=1), n
    if output.shape != target.shape:
        raise ValueError(f"output {list(output.shape)} does not fit target {list(target.shape)}")
    return output.long(), None


def confusion_matrix(
    output: torch.Tensor, target: torch.Tensor, n_classes: int | None = None
) -> torch.Tensor:
    """The ``C x C`` pixel counts (int64, on the inputs' device): row = true class, column = predicted.

    Target pixels outside ``0 .. C-1`` (e.g. an ignore value of 255) are not counted.
    """
    if target.dim() == output.dim() and target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    pred, n_pred = predicted_classes(output, target)
    n = n_classes or n_pred or int(max(pred.max().item(), target.max().item())) + 1
    target, pred = target.reshape(-1).long(), pred.reshape(-1)
    valid = (target >= 0) & (target < n)
    index = target[valid] * n + pred[valid].clamp(0, n - 1)
    return torch.bincount(index, minlength=n * n).reshape(n, n)


def dice_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """Per-class dice (float64, ``nan`` for a class neither true nor predicted anywhere)."""
    cm = cm.double()
    tp = cm.diagonal()
    denom = cm.sum(0) + cm.sum(1)  # 2 tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.full_like(tp, float("nan")))


def iou_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (float64, ``nan`` for a class neither true nor predicted anywhere)."""
    cm = cm.double()
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def pixel_accuracy_from_confusion(cm: torch.Tensor) -> torch.Tensor:
    """The share of pixels whose class is right (``nan`` for no pixels)."""
    total = cm.sum()
    return (
        cm.diagonal().sum().double() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    )


def _nanmean(values: torch.Tensor) -> torch.Tensor:
    return values.nanmean() if not values.isnan().all() else torch.tensor(float("nan"), dtype=values.dtype)


def dice_per_class(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of each class on this batch (``nan`` where a class is neither true nor predicted)."""
    return dice_from_confusion(confusion_matrix(output, target))


def iou_per_class(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of each class on this batch (``nan`` where a class is neither true nor predicted)."""
    return iou_from_confusion(confusion_matrix(output, target))


def multi_dice(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean dice over the classes present (true or predicted) in this batch (background counts).

    Not fastai v1's ``dice`` (binary masks, per item: :func:`learnkit.metrics.dice`)."""
    return _nanmean(dice_per_class(output, target))


def iou(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean IoU (Jaccard index) over the classes present (true or predicted) in this batch."""
    return _nanmean(iou_per_class(output, target))


def pixel_accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The share of this batch's pixels whose predicted class is the true one."""
    return pixel_accuracy_from_confusion(confusion_matrix(output, target))


class ConfusionMetric(Callback):
    """A Learner metric from the confusion matrix of the whole validation set.

    The matrix stays on the device, summed batch by batch (and over processes in a distributed
    run); at the epoch's end the score is appended to ``state.last_metrics``. After a run,
    :attr:`confusion` holds the last validation's matrix and :meth:`per_class` its per-class scores.

    Args:
        name: the column name (``dice``, ``iou``, ...).
        score: ``score(cm) -> per-class tensor`` (averaged over classes that have a score) or a
            0-d tensor.
    """

    order = -100  # as AverageMetric: before the Recorder reads last_metrics

    def __init__(self, name: str, score):
        self.__name__ = self.name = name
        self.score = score
        self.confusion: torch.Tensor | None = None

    def on_epoch_begin(self, state: RunState) -> None:
        self.confusion = None

    def on_batch_end(self, state: RunState) -> None:
        if state.train:
            return
        target = state.last_target[0] if isinstance(state.last_target, (list, tuple)) else state.last_target
        cm = confusion_matrix(state.last_output.detach(), target)
        if self.confusion is None:
            self.confusion = cm
        else:  # class-index outputs size the matrix by the largest class seen so far
            n = max(cm.shape[0], self.confusion.shape[0])
            self.confusion = _pad(self.confusion, n) + _pad(cm, n)

    def reduce(self) -> torch.Tensor | None:
        """The matrix summed over the processes of a distributed run (this process's otherwise)."""
        from learnkit.distributed import is_distributed

        if self.confusion is None or not is_distributed():
            return self.confusion
        import torch.distributed as dist

        cm = self.confusion.clone()
        if dist.get_backend() == "nccl" and cm.device.type != "cuda":
            cm = cm.cuda()
        dist.all_reduce(cm)
        return cm.to(self.confusion.device)

    def on_epoch_end(self, state: RunState) -> None:
        if state.last_metrics is None:
            return
        self.confusion = self.reduce()
        state.last_metrics.append(self.value())

    def value(self) -> float:
        """The score of the accumulated matrix (``nan`` before any validation batch)."""
        if self.confusion is None:
            return float("nan")
        scores = self.score(self.confusion)
        return float(_nanmean(scores) if scores.dim() else scores)

    def per_class(self, classes: list[str] | None = None) -> dict[str, float | None]:
        """Per-class scores of the accumulated matrix, by class name (``None`` where undefined)."""
        if self.confusion is None:
            return {}
        scores = self.score(self.confusion)
        if not scores.dim():
            return {}
        names = list(classes) if classes is not None else []
        names += [str(i) for i in range(len(names), len(scores))]
        return {names[i]: (None if v != v else float(v)) for i, v in enumerate(scores.tolist())}

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The score of one batch (or of a whole set's predictions at once), as the functions give it."""
        scores = self.score(confusion_matrix(output, target))
        return _nanmean(scores) if scores.dim() else scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _pad(cm: torch.Tensor, n: int) -> torch.Tensor:
    if cm.shape[0] == n:
        return cm
    out = torch.zeros(n, n, dtype=cm.dtype, device=cm.device)
    out[: cm.shape[0], : cm.shape[1]] = cm
    return out


class Dice(ConfusionMetric):
    """Mean dice over the validation set's classes (see the module docstring), as a Learner metric.

    Its column is ``dice`` (the command line's unet reports it so); the value is the multi-class,
    whole-set dice of :func:`multi_dice`, not v1's binary per-item :func:`learnkit.metrics.dice`."""

    def __init__(self) -> None:
        super().__init__("dice", dice_from_confusion)


class IoU(ConfusionMetric):
    """Mean IoU over the validation set's classes, as a Learner metric."""

    def __init__(self) -> None:
        super().__init__("iou", iou_from_confusion)


class PixelAccuracy(ConfusionMetric):
    """The validation set's pixel accuracy, as a Learner metric."""

    def __init__(self) -> None:
        super().__init__("pixel_accuracy", pixel_accuracy_from_confusion)


def segmentation_metrics() -> list[ConfusionMetric]:
    """Fresh ``[Dice(), IoU(), PixelAccuracy()]`` for one Learner (they keep state: do not share)."""
    return [Dice(), IoU(), PixelAccuracy()]
