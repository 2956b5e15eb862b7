"""Learning-rate ranges, per-group hyper-parameters and weight-decay semantics, by hand."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from learnkit import Learner, lr_range
from learnkit.errors import UsageError
from learnkit.optim import OptimWrapper
from tests.core.tiny import tiny_data


def test_lr_range_forms():
    assert lr_range(1e-3, 3) == [1e-3] * 3
    assert lr_range(slice(1e-3), 3) == pytest.approx([1e-4, 1e-4, 1e-3])
    assert lr_range(slice(1e-5, 1e-3), 3) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert lr_range([1, 2], 2) == [1.0, 2.0]
    assert lr_range(slice(1e-5, 1e-3), 1) == [1e-3]
    with pytest.raises(UsageError):
        lr_range([1, 2, 3], 2)


@given(st.floats(1e-8, 1.0), st.floats(1e-8, 1.0), st.integers(2, 8))
def test_slice_is_geometric_from_start_to_stop(a, b, n):
    lrs = lr_range(slice(a, b), n)
    assert len(lrs) == n and lrs[0] == pytest.approx(a) and lrs[-1] == pytest.approx(b)
    ratios = [lrs[i + 1] / lrs[i] for i in range(n - 1)]
    assert all(r == pytest.approx(ratios[0]) for r in ratios)


class OneParam(nn.Module):
    """out = w * x, so with x = 1 and loss = out.mean(), dloss/dw = 1."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0]))

    def forward(self, x):
        return self.w * x


def _one_step(true_wd: bool, lr=0.1, wd=0.1) -> float:
    model = OneParam()
    opt = OptimWrapper(partial(torch.optim.Adam, betas=(0.9, 0.99), eps=0.0), [model], lr, wd, true_wd)
    model(torch.ones(1)).mean().backward()
    opt.step()
    return model.w.item()


def test_decoupled_weight_decay_by_hand():
    # decoupled: w <- w * (1 - lr*wd) = 1.98, then Adam's first step moves by lr * sign(g): 1.88
    assert _one_step(true_wd=True) == pytest.approx(2 * (1 - 0.1 * 0.1) - 0.1)


def test_l2_weight_decay_by_hand():
    # L2: g = 1 + wd*w = 1.2; Adam's first step is lr * g/|g| = 0.1 whatever g's size: 1.9
    assert _one_step(true_wd=False) == pytest.approx(2 - 0.1)


@pytest.mark.parametrize("bn_wd", [True, False])
def test_bn_wd_spares_norm_layers_and_biases(bn_wd):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = OptimWrapper(partial(torch.optim.SGD), [model], lr=0.5, wd=0.2, true_wd=True, bn_wd=bn_wd)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient step: only weight decay moves anything
    opt.step()
    shrink = 1 - 0.5 * 0.2
    assert torch.allclose(model[0].weight, before["0.weight"] * shrink)
    for key in ("0.bias", "1.weight", "1.bias"):
        want = before[key] * shrink if bn_wd else before[key]
        assert torch.allclose(model.state_dict()[key], want), key


def test_l2_bn_wd_false_sets_zero_decay_on_norm_groups():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    opt = OptimWrapper(torch.optim.SGD, [model], lr=0.1, wd=0.3, true_wd=False, bn_wd=False)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.3, 0.0]


def test_per_group_lrs_reach_the_param_groups():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    opt = OptimWrapper(torch.optim.SGD, list(model), lr=slice(1e-4, 1e-2), wd=[0.1, 0.2, 0.3])
    assert opt.lrs == pytest.approx([1e-4, 1e-3, 1e-2])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3, 1e-2, 1e-2])
    assert opt.wds == [0.1, 0.2, 0.3]
    opt.mom = 0.5
    assert opt.moms == [0.5] * 3
    with pytest.raises(UsageError):
        opt.lr = math.nan


def test_frozen_groups_do_not_change_but_their_norm_layers_train():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU())
    head = nn.Linear(8, 2)
    model = nn.Sequential(body, head)
    learn = Learner(tiny_data(), model, layer_groups=[body, head], wd=0.1)
    learn.freeze()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    learn.fit(1, 1e-2)
    after = model.state_dict()
    assert torch.equal(after["0.0.weight"], before["0.0.weight"])  # frozen linear: untouched (no decay)
    assert torch.equal(after["0.0.bias"], before["0.0.bias"])
    assert not torch.equal(after["0.1.weight"], before["0.1.weight"])  # its batchnorm trains (train_bn)
    assert not torch.equal(after["1.weight"], before["1.weight"])  # the head trains
    learn.unfreeze()
    learn.fit(1, 1e-2)
    assert not torch.equal(model.state_dict()["0.0.weight"], before["0.0.weight"])


def test_freeze_without_train_bn_freezes_norm_layers_too():
    body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    model = nn.Sequential(body, nn.Linear(8, 2))
    learn = Learner(tiny_data(), model, layer_groups=[body, model[1]], train_bn=False)
    learn.freeze()
    assert not any(p.requires_grad for p in body.parameters())


def test_freeze_to_keeps_the_optimizer_state():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    learn = Learner(tiny_data(), model, layer_groups=[model[0], model[2]])
    learn.fit(1, 1e-3)
    opt, state = learn.opt, {k: {n: v.clone() for n, v in s.items()} for k, s in learn.opt.state.items()}
    learn.freeze_to(1)
    learn.fit(1, 1e-3)
    assert learn.opt is opt
    assert torch.equal(learn.opt.state[model[0].weight]["exp_avg"], state[model[0].weight]["exp_avg"])
