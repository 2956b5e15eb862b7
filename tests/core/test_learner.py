"""The Learner end to end on tiny tensors: against a hand-written loop, resume, validate, preds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch, Learner, accuracy, error_rate, top_k_accuracy
from learnkit.errors import CheckpointError
from tests.core.tiny import tiny_data, tiny_model


def test_fit_equals_a_hand_written_pytorch_loop():
    data = tiny_data(shuffle=False)
    learn = Learner(data, tiny_model(), opt_func=torch.optim.SGD, wd=0.0)
    learn.fit(2, 0.1)
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        model.train()
        for xb, yb in data.train_dl.dl:
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(learn.model.state_dict().values(), model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_recorder_traces_and_history():
    learn = Learner(tiny_data(n=64, bs=16), tiny_model(), metrics=[accuracy])
    learn.fit(2, slice(1e-3))
    rec = learn.recorder
    assert len(rec.losses) == len(rec.lrs) == len(rec.moms) == 8
    assert rec.lrs == [1e-3] * 8 and rec.moms == [0.9] * 8
    assert rec.nb_batches == [4, 4]
    assert [row["epoch"] for row in rec.history] == [0, 1]
    assert rec.names == ["epoch", "train_loss", "valid_loss", "accuracy", "lr", "mom", "time"]
    assert [list(row) for row in rec.history] == [rec.names] * 2
    assert [(row["lr"], row["mom"]) for row in rec.history] == [(1e-3, 0.9)] * 2  # the epoch's last batch
    assert rec.history[-1]["train_loss"] == pytest.approx(rec.losses[-1])
    assert rec.history[-1]["valid_loss"] == pytest.approx(rec.val_losses[-1])
    assert 0 <= rec.metrics[-1][0] <= 1


def test_smoothed_loss_is_the_debiased_ema():
    learn = Learner(tiny_data(n=48, bs=16, shuffle=False), tiny_model(), opt_func=torch.optim.SGD)
    raw = []
    from learnkit import Callback

    class Raw(Callback):
        def on_backward_begin(self, state):
            raw.append(state.last_loss.item())

    learn.fit(1, 0.0, callbacks=[Raw()])
    avg, want = 0.0, []
    for i, v in enumerate(raw, 1):
        avg = 0.98 * avg + 0.02 * v
        want.append(avg / (1 - 0.98**i))
    assert learn.recorder.losses == pytest.approx(want, rel=1e-5)


def test_validate_matches_a_manual_computation():
    data = tiny_data(n=64)
    learn = Learner(data, tiny_model(), metrics=[accuracy, error_rate])
    loss, acc, err = learn.validate()
    x, y = data.valid_dl.dl.dataset.tensors
    learn.model.eval()
    with torch.no_grad():
        out = learn.model(x)
    assert loss == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == pytest.approx((out.argmax(1) == y).float().mean().item())
    assert err == pytest.approx(1 - acc)


def test_top_k_accuracy_by_hand():
    out = torch.tensor([[0.1, 0.5, 0.4], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    y = torch.tensor([2, 2, 0])
    assert top_k_accuracy(out, y, k=2).item() == pytest.approx(1 / 3)
    assert top_k_accuracy(out, y, k=3).item() == 1.0


def test_get_preds_softmax_targets_and_losses():
    data = tiny_data(n=64)
    learn = Learner(data, tiny_model())
    preds, targets, losses = learn.get_preds(with_loss=True)
    assert preds.shape == (32, 2) and targets.shape == (32,) and losses.shape == (32,)
    assert torch.allclose(preds.sum(1), torch.ones(32), atol=1e-6)
    assert losses.mean().item() == pytest.approx(learn.validate()[0], rel=1e-5)
    assert learn.loss_func.reduction == "mean"  # the learner's loss object is untouched


def _fresh(seed=0, **kw):
    return Learner(tiny_data(n=64, bs=16, shuffle=True), tiny_model(seed=seed), metrics=[accuracy], **kw)


def test_resume_is_exact(tmp_path):
    torch.manual_seed(123)
    straight = _fresh(path=tmp_path / "a")
    straight.fit(2, 1e-2)

    torch.manual_seed(123)
    first = _fresh(path=tmp_path / "b")
    first.fit(1, 1e-2)
    first.save("one")
    torch.manual_seed(999)  # whatever happens in between
    resumed = _fresh(seed=7, path=tmp_path / "b")
    resumed.load("one")
    assert resumed.epoch == 1 and resumed.iteration == 4
    resumed.fit(1, 1e-2)

    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), k
    hist_a, hist_b = straight.recorder.history, resumed.recorder.history
    # each fit numbers its epochs from 0, as fastai v1; the run's position counts on
    assert [r["epoch"] for r in hist_b] == [0, 0] and resumed.epoch == 2
    for ra, rb in zip(hist_a, hist_b):
        for key in ("train_loss", "valid_loss", "accuracy"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-6), key
    assert straight.recorder.losses == pytest.approx(resumed.recorder.losses, rel=1e-6)


def test_save_without_opt_and_load_weights_only(tmp_path):
    learn = _fresh(path=tmp_path)
    learn.fit(1, 1e-2)
    path = learn.save("w", with_opt=False)
    assert path == tmp_path / "models" / "w.safetensors" and path.exists()
    assert not (tmp_path / "models" / "w.opt.safetensors").exists()
    other = _fresh(seed=3, path=tmp_path)
    other.load("w")
    assert other.epoch == 0  # weights only: the run's position is not restored
    for a, b in zip(learn.model.state_dict().values(), other.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError):
        other.load("w", with_opt=True)


def test_load_refuses_another_model(tmp_path):
    learn = _fresh(path=tmp_path)
    learn.save("small")
    wide = Learner(tiny_data(), nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)), path=tmp_path)
    with pytest.raises(CheckpointError, match="do not fit"):
        wide.load("small")
    (tmp_path / "models" / "junk.safetensors").write_text("not a checkpoint")
    with pytest.raises(CheckpointError):
        learn.load("junk")


def test_nan_lr_is_refused_and_module_functions_work():
    from learnkit import fit, get_preds, loss_batch, train_epoch, validate
    from learnkit.errors import UsageError

    learn = _fresh()
    with pytest.raises(UsageError):
        learn.fit(1, math.nan)
    data = tiny_data()
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train_epoch(model, data.train_dl.dl, opt, nn.functional.cross_entropy)
    loss = validate(model, data.valid_dl, nn.functional.cross_entropy)
    preds, targets = get_preds(model, data.valid_dl)
    assert preds.shape == (32, 2) and isinstance(loss, float)
    xb, yb = next(iter(data.valid_dl))
    assert loss_batch(model.eval(), xb, yb, nn.functional.cross_entropy).shape == ()
    fit(1, learn)
    assert learn.epoch == 1


def test_init_and_backward_and_summary():
    learn = _fresh()
    learn.init(nn.init.zeros_)
    assert torch.equal(learn.model[0].weight, torch.zeros(8, 4))
    assert torch.equal(learn.model[0].bias, torch.zeros(8))
    assert torch.equal(learn.model[1].weight, torch.ones(8))  # batchnorm keeps its init
    learn.model.zero_grad()
    loss = learn.backward((torch.randn(4), torch.tensor(1)))
    assert loss.ndim == 0 and learn.model[0].weight.grad is not None


def test_plain_dataloaders_are_accepted_in_a_databunch():
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    data = DataBunch(
        DataLoader(TensorDataset(x, y), batch_size=5), DataLoader(TensorDataset(x, y), batch_size=10)
    )
    learn = Learner(data, tiny_model(), loss_func=nn.CrossEntropyLoss())
    learn.fit(1, 1e-3)
    assert learn.recorder.nb_batches == [4]


def test_default_activation_follows_the_loss():
    from functools import partial

    from learnkit.learner import default_activation

    logits = torch.tensor([[2.0, -1.0]])
    assert torch.allclose(default_activation(nn.CrossEntropyLoss())(logits), logits.softmax(1))
    assert torch.allclose(default_activation(nn.functional.cross_entropy)(logits), logits.softmax(1))
    assert default_activation(nn.BCEWithLogitsLoss()) is torch.sigmoid
    assert default_activation(partial(nn.functional.binary_cross_entropy_with_logits)) is torch.sigmoid
    assert default_activation(nn.MSELoss()) is None  # regression: outputs as they are
