"""Metrics against fastai v1's formulas (fastai/metrics.py, fastai/fastai1), written out here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from learnkit import Learner
from learnkit.metrics import (
    accuracy,
    accuracy_thresh,
    dice,
    error_rate,
    exp_rmspe,
    explained_variance,
    fbeta,
    foreground_acc,
    mae,
    metric_name,
    mse,
    msle,
    r2_score,
    rmse,
    top_k_accuracy,
)
from learnkit.seg_metrics import multi_dice
from tests.core.tiny import tiny_data, tiny_model


def _binary_masks():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(3, 1, 6, 6, generator=g) > 0.5).long()
    logits = torch.randn(3, 2, 6, 6, generator=g)
    target[2] = 0
    logits[2, 0], logits[2, 1] = 1.0, 0.0  # item 2: empty prediction and empty mask -> 1
    return logits, target


def test_dice_is_v1s_binary_per_item_dice():
    logits, target = _binary_masks()
    pred = logits.argmax(1).view(3, -1).numpy()
    targ = target.view(3, -1).numpy()
    scores = []
    for p, t in zip(pred, targ):
        inter, union = float((p * t).sum()), float((p + t).sum())
        scores.append(1.0 if union == 0 else 2 * inter / union)
    assert float(dice(logits, target)) == pytest.approx(np.mean(scores))
    ious = []
    for p, t in zip(pred, targ):
        inter, union = float((p * t).sum()), float((p + t).sum())
        ious.append(1.0 if union == 0 else inter / (union - inter + 1e-8))
    assert float(dice(logits, target, iou=True)) == pytest.approx(np.mean(ious))
    # the multi-class dice (background counted, whole batch) is another number, under its own name
    assert float(multi_dice(logits, target)) != pytest.approx(float(dice(logits, target)))


def test_classification_metrics_as_v1():
    out = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    y = torch.tensor([1, 1, 0, 0])
    assert float(accuracy(out, y)) == 0.5 and float(error_rate(out, y)) == 0.5
    # v1: target among the top k; item 2's target (0) ranks last of 3
    assert float(top_k_accuracy(out, y, k=2)) == 0.75
    logits = torch.tensor([[2.0, -1.0, 0.1], [-3.0, 0.5, 4.0]])
    soft = torch.tensor([[1.0, 0.0, 0.7], [0.0, 1.0, 1.0]])  # v1 compares with target.byte(): 0.7 -> 0
    expect = ((logits.sigmoid() > 0.5).byte() == soft.byte()).float().mean()
    assert float(accuracy_thresh(logits, soft)) == pytest.approx(float(expect))
    hard = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    pred = (logits.sigmoid() > 0.2).float()
    tp = (pred * hard).sum(1)
    prec, rec = tp / (pred.sum(1) + 1e-9), tp / (hard.sum(1) + 1e-9)
    expect = ((prec * rec) / (prec * 4 + rec + 1e-9) * 5).mean()
    assert float(fbeta(logits, hard)) == pytest.approx(float(expect))


def test_foreground_acc_leaves_out_the_void_code():
    out = torch.zeros(1, 3, 1, 4)
    out[0, [0, 1, 2, 2], 0, [0, 1, 2, 3]] = 1.0  # predicts 0, 1, 2, 2
    target = torch.tensor([[[[0, 2, 2, 1]]]])  # void code 0: three pixels count, one right
    assert float(foreground_acc(out, target, void_code=0)) == pytest.approx(1 / 3)


def test_regression_metrics_as_v1():
    pred = torch.tensor([1.0, 2.0, 3.5, 4.0])
    targ = torch.tensor([1.5, 2.0, 3.0, 5.0])
    p, t = pred.numpy().astype(float), targ.numpy().astype(float)
    assert float(mae(pred, targ)) == pytest.approx(np.abs(t - p).mean())
    assert float(mse(pred, targ)) == pytest.approx(((t - p) ** 2).mean())
    assert float(rmse(pred, targ)) == pytest.approx(math.sqrt(((t - p) ** 2).mean()))
    assert float(msle(pred, targ)) == pytest.approx(((np.log1p(t) - np.log1p(p)) ** 2).mean(), rel=1e-5)
    assert float(r2_score(pred, targ)) == pytest.approx(
        1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum()
    )
    # torch.var is the unbiased variance in v1's formula too
    assert float(explained_variance(pred, targ)) == pytest.approx(
        1 - np.var(t - p, ddof=1) / np.var(t, ddof=1)
    )
    ep, et = np.exp(p), np.exp(t)
    assert float(exp_rmspe(pred, targ)) == pytest.approx(math.sqrt((((et - ep) / et) ** 2).mean()), rel=1e-5)
    with pytest.raises(ValueError, match="same size"):
        mse(pred, targ[:3])


def test_alias_columns_carry_the_functions_name_as_v1():
    assert [metric_name(m) for m in (mse, mae, rmse, error_rate)] == [
        "mean_squared_error",
        "mean_absolute_error",
        "root_mean_squared_error",
        "error_rate",
    ]


def test_a_fit_averages_metrics_over_the_validation_set_as_v1():
    data = tiny_data()
    learn = Learner(data, tiny_model(), metrics=[accuracy, error_rate], quiet=True)
    learn.fit(1, 1e-2)
    preds, y = learn.get_preds()
    acc = float((preds.argmax(1) == y).float().mean())
    row = learn.recorder.history[0]
    assert row["accuracy"] == pytest.approx(acc) and row["error_rate"] == pytest.approx(1 - acc)
