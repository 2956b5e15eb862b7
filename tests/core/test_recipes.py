"""Training recipes: accumulation, EMA, cutmix, losses, multi-label metrics, pretrained by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch, Learner
from learnkit.callbacks.accumulate import GradientAccumulation
from learnkit.callbacks.cutmix import CutMixCallback, cutmix_box
from learnkit.callbacks.ema import EMACallback
from learnkit.errors import DataError, UsageError
from learnkit.losses import balanced_class_weights, classification_loss
from learnkit.metrics import accuracy_thresh, fbeta
from learnkit.pretrained import resolve_pretrained


def _data(bs: int, n: int = 64) -> DataBunch:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    train = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=False)
    return DataBunch(train, DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32), classes=["a", "b"])


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))  # no batch norm: batch-size free


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_accumulating_two_half_batches_steps_as_one_whole_batch(tmp_path):
    whole = Learner(_data(16), _model(), path=tmp_path)
    whole.fit(1, 1e-2)
    halves = Learner(_data(8), _model(), path=tmp_path)
    halves.fit(1, 1e-2, callbacks=[GradientAccumulation(halves, n=2)])
    assert torch.allclose(_weights(whole.model), _weights(halves.model), atol=1e-6)
    with pytest.raises(UsageError):
        GradientAccumulation(halves, n=0)


def test_accumulated_gradients_round_trip_through_state_dict(tmp_path):
    learn = Learner(_data(8), _model(), path=tmp_path)
    cb = GradientAccumulation(learn, n=4)
    assert "tensors" not in cb.state_dict()  # between windows: nothing to keep
    for p in learn.model.parameters():
        p.grad = torch.full_like(p, 0.5)
    state = cb.state_dict()
    learn.model.zero_grad(set_to_none=True)
    cb.load_state_dict(state)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in learn.model.parameters())


def test_ema_validates_and_ends_with_the_average_and_keeps_raw_weights_for_resume(tmp_path):
    learn = Learner(_data(8), _model(), path=tmp_path)
    ema = EMACallback(learn, decay=0.5)
    learn.callbacks.append(ema)
    learn.fit(2, 1e-2)
    assert torch.equal(_weights(learn.model), _weights(ema.averaged.module))
    raw = ema.raw_state()
    assert not torch.equal(raw["0.weight"], learn.model.state_dict()["0.weight"])
    assert learn.validate()[0] == pytest.approx(learn.recorder.history[-1]["valid_loss"], rel=1e-5)
    learn.save("last")
    again = Learner(_data(8), _model(), path=tmp_path)
    ema2 = EMACallback(again, decay=0.5)
    again.callbacks.append(ema2)
    again.load("last")
    assert torch.equal(again.model.state_dict()["0.weight"], raw["0.weight"])  # raw back for training
    assert torch.equal(_weights(ema2.averaged.module), _weights(ema.averaged.module))


def test_cutmix_box_and_lambda_follow_torchvision():
    rng = np.random.default_rng(0)
    for lam in (0.1, 0.5, 0.9):
        x1, y1, x2, y2 = cutmix_box(lam, 32, 32, rng)
        assert 0 <= x1 <= x2 <= 32 and 0 <= y1 <= y2 <= 32
        assert (x2 - x1) <= 2 * int(0.5 * np.sqrt(1 - lam) * 32)
    learn = Learner(_data(8), _model())
    cb = CutMixCallback(learn, alpha=1.0, seed=3)
    lam, (x1, y1, x2, y2) = cb.draw(0, 0, 16, 16)
    assert lam == pytest.approx(1 - (x2 - x1) * (y2 - y1) / 256)
    box = (x1, y1, x2, y2)
    assert cb.draw(0, 0, 16, 16) == (lam, box) and cb.draw(0, 1, 16, 16) != (lam, box)


def test_cutmix_pastes_the_rolled_batch_and_blends_the_losses():
    from learnkit.callback import RunState

    learn = Learner(_data(8), _model())
    cb = CutMixCallback(learn, alpha=1.0, seed=1)
    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 3, 8, 8).clone()
    y = torch.tensor([0, 1, 0, 1])
    state = RunState(train=True, last_input=x, last_target=y, loss_func=nn.CrossEntropyLoss())
    cb.on_train_begin(state)
    cb.on_batch_begin(state)
    lam, (x1, y1, x2, y2) = cb.draw(0, 0, 8, 8)
    out = state.last_input
    assert torch.equal(out[1, :, y1:y2, x1:x2], x[0, :, y1:y2, x1:x2])  # item 1 got item 0's patch
    assert (out[1] == 1).float().mean() == pytest.approx(lam)
    targets = state.last_target
    assert torch.equal(targets[1], y.roll(1, 0))
    logits = torch.randn(4, 2)
    expected = lam * nn.functional.cross_entropy(logits, y) + (1 - lam) * nn.functional.cross_entropy(
        logits, y.roll(1, 0)
    )
    assert state.loss_func(logits, *targets) == pytest.approx(expected.item(), rel=1e-5)


def test_balanced_class_weights_are_sklearns():
    assert balanced_class_weights([0, 0, 0, 1, 2, 2], 3) == pytest.approx([6 / 9, 6 / 3, 6 / 6])
    with pytest.raises(DataError):
        balanced_class_weights([], 2)


def test_label_smoothing_and_multi_label_losses():
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    smooth = classification_loss(label_smoothing=0.1)(logits, y)
    soft = torch.full((5, 3), 0.1 / 3) + 0.9 * nn.functional.one_hot(y, 3)
    assert smooth == pytest.approx((-(soft * logits.log_softmax(1)).sum(1)).mean().item(), rel=1e-5)
    multi = classification_loss(multi_label=True)
    target = torch.tensor([[1.0, 0.0, 1.0]] * 5)
    assert multi(logits, target) == pytest.approx(
        nn.functional.binary_cross_entropy_with_logits(logits, target).item()
    )
    with pytest.raises(UsageError):
        classification_loss(label_smoothing=1.0)


def test_multi_label_metrics_match_hand_computation():
    out = torch.logit(torch.tensor([[0.9, 0.3, 0.1], [0.6, 0.1, 0.7]]))
    target = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert accuracy_thresh(out, target).item() == pytest.approx(4 / 6)
    # thresh 0.2: item 0 predicts {0, 1} (P=1, R=1, F=1); item 1 predicts {0, 2}: P=1/2, R=1
    f2_item1 = (0.5 * 1) / (0.5 * 4 + 1) * 5
    assert fbeta(out, target).item() == pytest.approx((1 + f2_item1) / 2, rel=1e-6)


def test_imagenet_weights_come_from_torchs_cache_and_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DataError, match=r"resnet18-f37072fd\.pth.*hub/checkpoints"):
        resolve_pretrained("imagenet", "resnet18")
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"w": torch.zeros(1)}, folder / "resnet18-f37072fd.pth")
    assert resolve_pretrained("imagenet", "resnet18") == folder / "resnet18-f37072fd.pth"
    assert str(resolve_pretrained("weights.pth", "resnet18")) == "weights.pth"
    with pytest.raises(UsageError):
        resolve_pretrained("imagenet", "simple_cnn")


def _csv_set(tmp_path, multi: bool, is_valid: bool = False):
    from PIL import Image

    root = tmp_path / "csvdata"
    (root / "img").mkdir(parents=True)
    rows = ["name,label" + (",is_valid" if is_valid else "")]
    for i in range(12):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(root / "img" / f"{i}.png")
        label = ("a b" if i % 3 == 0 else "b") if multi else ("a" if i % 2 else "b")
        rows.append(f"img/{i}.png,{label}" + (f",{'true' if i < 3 else 'false'}" if is_valid else ""))
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_csv_labels_single_and_multi_label(tmp_path):
    from learnkit.data import ImageDataBunch

    single = ImageDataBunch.from_csv(
        _csv_set(tmp_path / "s", False), valid_pct=0.25, size=8, bs=4, device="cpu"
    )
    assert single.classes == ["a", "b"] and not single.multi_label
    assert len(single.train_ds) == 9 and len(single.valid_ds) == 3
    multi = ImageDataBunch.from_csv(
        _csv_set(tmp_path / "m", True, is_valid=True), label_delim=" ", size=8, bs=4, device="cpu"
    )
    assert multi.multi_label and isinstance(multi.loss_func, nn.BCEWithLogitsLoss)
    assert len(multi.valid_ds) == 3  # the is_valid column
    _, y = multi.valid_ds[0]
    assert y.tolist() == [1.0, 1.0]  # row 0: "a b"
    with pytest.raises(DataError, match="valid_pct"):
        ImageDataBunch.from_csv(_csv_set(tmp_path / "n", False), size=8)
