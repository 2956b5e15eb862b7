"""Pixel metrics against values worked out by hand on tiny masks, and their set-level accumulation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch
from learnkit.callback import RunState
from learnkit.learner import Learner
from learnkit.seg_metrics import (
    Dice,
    IoU,
    PixelAccuracy,
    confusion_matrix,
    dice_per_class,
    iou,
    iou_per_class,
    multi_dice,
    pixel_accuracy,
    segmentation_metrics,
)

# One 2 x 3 image, 4 classes; class 3 is neither true nor predicted anywhere.
TARGET = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
PRED = torch.tensor([[[0, 1, 1], [1, 2, 0]]])


def logits(pred: torch.Tensor, n_classes: int = 4) -> torch.Tensor:
    """Logits ``N x C x H x W`` whose arg-max is ``pred``."""
    return nn.functional.one_hot(pred, n_classes).permute(0, 3, 1, 2).float() * 5


def test_confusion_matrix_rows_are_truth_columns_predictions():
    expected = torch.tensor([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(confusion_matrix(logits(PRED), TARGET), expected)


def test_per_class_values_by_hand_with_an_absent_class():
    # class 0: tp 1, fp 1, fn 1 -> dice 2/4, iou 1/3
    # class 1: tp 2, fp 1, fn 0 -> dice 4/5, iou 2/3
    # class 2: tp 1, fp 0, fn 1 -> dice 2/3, iou 1/2
    # class 3: absent from truth and prediction -> no score
    d, j = dice_per_class(logits(PRED), TARGET), iou_per_class(logits(PRED), TARGET)
    assert d[:3].tolist() == pytest.approx([0.5, 0.8, 2 / 3])
    assert j[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert math.isnan(d[3]) and math.isnan(j[3])


def test_means_skip_absent_classes_and_pixel_accuracy():
    assert float(multi_dice(logits(PRED), TARGET)) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert float(iou(logits(PRED), TARGET)) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert float(pixel_accuracy(logits(PRED), TARGET)) == pytest.approx(4 / 6)


def test_a_class_predicted_but_never_true_scores_zero():
    target = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.tensor([[[0, 3], [1, 1]]])  # class 3 predicted once, never true
    d = dice_per_class(logits(pred), target)
    assert d[3] == 0 and math.isnan(d[2])
    # class 0: tp 1, fn 1 -> 2/3; class 1: tp 2 -> 1; class 3: 0
    assert float(multi_dice(logits(pred), target)) == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_perfect_and_all_background_predictions():
    assert float(multi_dice(logits(TARGET), TARGET)) == 1.0
    assert float(iou(logits(TARGET), TARGET)) == 1.0
    background = torch.zeros_like(TARGET)
    # background: tp 2, fp 4 -> dice 4/8; classes 1 and 2 missed entirely -> 0
    assert float(multi_dice(logits(background), TARGET)) == pytest.approx(0.5 / 3)


def test_class_indices_binary_logits_and_ignored_pixels():
    assert float(multi_dice(PRED, TARGET)) == pytest.approx(float(multi_dice(logits(PRED), TARGET)))
    binary_target = torch.tensor([[[0, 1], [1, 1]]])
    binary_logit = torch.tensor([[[[-2.0, 3.0], [-1.0, 4.0]]]])  # N x 1 x H x W: class 1 where > 0
    # class 0: tp 1, fp 1 -> 2/3; class 1: tp 2, fn 1 -> 4/5
    assert float(multi_dice(binary_logit, binary_target)) == pytest.approx((2 / 3 + 4 / 5) / 2)
    ignored = TARGET.clone()
    ignored[0, 1, 2] = 255  # the one wrong class-2 pixel is not counted
    assert float(pixel_accuracy(logits(PRED), ignored)) == pytest.approx(4 / 5)


def _run_callback(cb, batches) -> float:
    state = RunState(train=False)
    cb.on_epoch_begin(state)
    for out, target in batches:
        state.last_output, state.last_target = out, target
        cb.on_batch_end(state)
    state.last_metrics = [0.0]
    cb.on_epoch_end(state)
    return state.last_metrics[-1]


def test_callbacks_score_the_whole_set_not_a_mean_of_batches():
    a = (logits(PRED), TARGET)
    b_target = torch.tensor([[[3, 3, 3], [3, 3, 0]]])
    b = (logits(torch.tensor([[[3, 3, 3], [0, 0, 0]]])), b_target)
    whole = (torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
    for cb, fn in ((Dice(), multi_dice), (IoU(), iou), (PixelAccuracy(), pixel_accuracy)):
        assert _run_callback(cb, [a, b]) == pytest.approx(float(fn(*whole)))
    for cb, fn in ((Dice(), multi_dice), (IoU(), iou)):  # here a mean of batch means would be wrong
        assert _run_callback(cb, [a, b]) != pytest.approx((float(fn(*a)) + float(fn(*b))) / 2)
    dice_cb = Dice()
    _run_callback(dice_cb, [a, b])
    per_class = dice_cb.per_class(["bg", "one", "two", "three"])
    assert per_class == pytest.approx(
        dict(zip(["bg", "one", "two", "three"], dice_per_class(*whole).tolist()))
    )


def test_learner_validate_accumulates_over_the_validation_set():
    # the "model" is the identity and the inputs are the logits themselves: the metrics are known
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (10, 5, 7), generator=g)
    noisy = torch.where(
        torch.rand(10, 5, 7, generator=g) < 0.3, torch.randint(0, 3, (10, 5, 7), generator=g), target
    )
    x = logits(noisy, 3)
    dl = DataLoader(TensorDataset(x, target), batch_size=3)
    data = DataBunch(dl, dl, classes=["a", "b", "c"], task="segmentation", device="cpu")
    learn = Learner(data, nn.Identity(), metrics=segmentation_metrics())
    _, d, j, acc = learn.validate()
    assert d == pytest.approx(float(multi_dice(x, target)))
    assert j == pytest.approx(float(iou(x, target)))
    assert acc == pytest.approx(float(pixel_accuracy(x, target)))
    assert [m.__name__ for m in learn.metrics] == ["dice", "iou", "pixel_accuracy"]
