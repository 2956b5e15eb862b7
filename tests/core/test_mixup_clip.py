"""Mixup against the hand formula on a fixed batch, and gradient clipping seen from a later callback."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from learnkit import Callback, Learner, RunState
from learnkit.callbacks.clip_grad import GradientClipping
from learnkit.callbacks.mixup import MixUpCallback, MixUpLoss
from learnkit.errors import UsageError
from tests.core.tiny import tiny_data, tiny_model


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g)


def test_draws_depend_only_on_seed_epoch_and_batch():
    learn = Learner(tiny_data(), tiny_model())
    cb = MixUpCallback(learn, alpha=0.4, seed=7)
    state = torch.get_rng_state()
    lam, perm = cb.draw(2, 3, 6)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    assert torch.equal(lam, cb.draw(2, 3, 6)[0]) and torch.equal(perm, cb.draw(2, 3, 6)[1])
    assert not torch.equal(lam, cb.draw(2, 4, 6)[0]) and not torch.equal(lam, cb.draw(3, 3, 6)[0])
    assert bool((lam >= 0.5).all() and (lam <= 1).all()) and sorted(perm.tolist()) == list(range(6))
    assert MixUpCallback(learn, seed=8).draw(2, 3, 6)[0].tolist() != lam.tolist()


def test_stacked_loss_equals_the_hand_formula_and_leaves_the_loss_alone():
    loss_func = nn.CrossEntropyLoss()
    learn = Learner(tiny_data(), tiny_model(), loss_func=loss_func)
    cb = MixUpCallback(learn, alpha=0.4, seed=1)
    x, y = _batch()
    state = RunState(learn=learn, loss_func=loss_func, train=True, epoch=1, num_batch=2)
    cb.on_train_begin(state)
    state.last_input, state.last_target = x, y
    cb.on_batch_begin(state)
    lam, perm = cb.draw(1, 2, 6)
    lam = lam.float()
    assert torch.allclose(state.last_input, x * lam[:, None] + x[perm] * (1 - lam[:, None]))
    y_a, y_b, lam_t = state.last_target
    assert torch.equal(y_a, y) and torch.equal(y_b, y[perm]) and torch.equal(lam_t, lam)
    out = learn.model(state.last_input)
    got = state.loss_func(out, *state.last_target)
    by_hand = (
        sum(
            lam[i] * F.cross_entropy(out[i : i + 1], y[i : i + 1])
            + (1 - lam[i]) * F.cross_entropy(out[i : i + 1], y[perm][i : i + 1])
            for i in range(6)
        )
        / 6
    )
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert state.loss_func(out, y).item() == pytest.approx(F.cross_entropy(out, y).item())  # plain
    cb.on_train_end(state)
    assert state.loss_func is loss_func and loss_func.reduction == "mean"


def test_sum_reduction_and_unstacked_targets():
    x, y = _batch()
    out, lam, perm = torch.randn(6, 2), torch.full((6,), 0.75), torch.tensor([1, 0, 3, 2, 5, 4])
    summed = MixUpLoss(nn.CrossEntropyLoss(reduction="sum"))(out, y, y[perm], lam)
    per = (
        F.cross_entropy(out, y, reduction="none") * 0.75
        + F.cross_entropy(out, y[perm], reduction="none") * 0.25
    )
    assert summed.item() == pytest.approx(per.sum().item(), rel=1e-6)
    learn = Learner(tiny_data(), tiny_model())
    cb = MixUpCallback(learn, stack_x=True, stack_y=False, seed=3)
    onehot = F.one_hot(y, 2).float()
    state = RunState(learn=learn, train=True, last_input=x, last_target=onehot)
    cb.on_batch_begin(state)
    lam, perm = cb.draw(0, 0, 6)
    lam = lam.float()
    x_a, x_b, lam_x = state.last_input
    assert torch.equal(x_a, x) and torch.equal(x_b, x[perm]) and torch.equal(lam_x, lam)
    assert torch.allclose(state.last_target, onehot * lam[:, None] + onehot[perm] * (1 - lam[:, None]))


def test_mixup_fit_trains_batches_only_and_restores_the_loss(tmp_path):
    loss_func = nn.CrossEntropyLoss()
    learn = Learner(tiny_data(), tiny_model(), loss_func=loss_func, path=tmp_path).mixup(alpha=0.4)
    seen = []

    class Spy(Callback):
        order = 10

        def on_batch_begin(self, state):
            seen.append((state.train, isinstance(state.last_target, list)))

    learn.fit(1, 1e-2, callbacks=[Spy()])
    assert set(seen) == {(True, True), (False, False)}  # mixed in training only
    assert learn.loss_func is loss_func and loss_func.reduction == "mean"
    assert learn.recorder.val_losses[-1] == pytest.approx(learn.validate()[0], rel=1e-6)
    with pytest.raises(UsageError):
        learn.mixup(alpha=0.0)


def test_mixup_seed_is_saved_and_resume_mixes_the_same(tmp_path):
    straight = Learner(tiny_data(), tiny_model(), path=tmp_path).mixup()
    straight.callbacks[0].seed = 11
    straight.fit(2, 1e-2)
    first = Learner(tiny_data(), tiny_model(), path=tmp_path).mixup()
    first.callbacks[0].seed = 11
    first.fit(1, 1e-2)
    first.save("e1")
    resumed = Learner(tiny_data(), tiny_model(seed=3), path=tmp_path).mixup().load("e1")
    assert resumed.callbacks[0].seed == 11
    resumed.fit(1, 1e-2)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


class _Norm(Callback):
    order = 100  # after GradientClipping: sees the gradients the step will use

    def __init__(self):
        self.norms, self.steps = [], []

    def on_backward_end(self, state):
        grads = [p.grad for p in state.model.parameters() if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())
        self._before = [p.detach().clone() for p in state.model.parameters()]

    def on_step_end(self, state):
        deltas = [(p.detach() - b).norm() for p, b in zip(state.model.parameters(), self._before)]
        self.steps.append(torch.linalg.vector_norm(torch.stack(deltas)).item())


def _sgd(groups, lr):
    return torch.optim.SGD(groups, lr=lr)


def test_clipping_bounds_the_gradient_norm():
    plain, clipped = _Norm(), _Norm()
    Learner(tiny_data(), tiny_model(), opt_func=_sgd, wd=0.0).fit(1, 1.0, callbacks=[plain])
    learn = Learner(tiny_data(), tiny_model(), opt_func=_sgd, wd=0.0).clip_grad(0.05)
    learn.fit(1, 1.0, callbacks=[clipped])
    assert min(plain.norms) > 0.1  # without clipping the bound is exceeded
    assert max(clipped.norms) == pytest.approx(0.05, rel=1e-5)
    assert max(clipped.steps) == pytest.approx(0.05, rel=1e-5)  # SGD, lr 1: the step is the gradient
    with pytest.raises(UsageError):
        GradientClipping(learn, 0.0)


def test_clipping_under_fp16_clips_the_unscaled_gradients():
    """Clipping the loss-scaled gradients would leave steps of 0.05 / 1024; unscaled first, the
    step of SGD at lr 1 is the clipped gradient itself."""
    norms = _Norm()
    learn = Learner(tiny_data(), tiny_model(), opt_func=_sgd, wd=0.0).to_fp16(loss_scale=1024.0)
    learn.clip_grad(0.05)
    try:
        learn.fit(1, 1.0, callbacks=[norms])
    except RuntimeError as exc:  # pragma: no cover - a torch build without CPU fp16 autocast
        pytest.skip(f"no fp16 on this device: {exc}")
    assert learn.precision.loss_scale == 1024.0  # no overflow: every step was taken
    assert max(norms.norms) == pytest.approx(0.05, rel=1e-4)
    assert max(norms.steps) == pytest.approx(0.05, rel=1e-3)
