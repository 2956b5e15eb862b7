"""Mixed precision: bf16 autocast, fp16 with a loss scale, back to fp32, and what checkpoints keep.

bf16 and fp16 autocast both run on the CPU, so everything but the CUDA-only paths (marked ``gpu``)
is tested here with a real fit on tiny data.
"""

from __future__ import annotations

import pytest
import torch

from learnkit import Callback, Learner
from learnkit.precision import BF16, FP16, Precision, make_precision
from tests.core.tiny import tiny_data, tiny_model


class _Dtypes(Callback):
    """Records the dtype of the model's output (inside autocast) and of the training loss."""

    def __init__(self) -> None:
        self.outputs: set[torch.dtype] = set()
        self.losses: list[float] = []

    def on_loss_begin(self, state) -> None:
        self.outputs.add(state.last_output.dtype)

    def on_batch_end(self, state) -> None:
        if state.train:
            self.losses.append(float(state.last_loss))


class _Overflow(Callback):
    """Puts an inf into one gradient at training iteration ``at``; records the weights around it."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.before = self.after = None

    def on_backward_end(self, state) -> None:
        if state.train and state.iteration == self.at:
            self.before = [p.detach().clone() for p in state.model.parameters()]
            next(state.model.parameters()).grad.view(-1)[0] = float("inf")

    def on_batch_end(self, state) -> None:
        if state.train and state.iteration == self.at + 1:  # iteration counts the batch just done
            self.after = [p.detach().clone() for p in state.model.parameters()]


def _fp16(learn: Learner, **kwargs) -> Learner:
    learn.to_fp16(**kwargs)
    try:  # one forward pass: a torch build without CPU fp16 autocast fails here
        with learn.precision.autocast("cpu"):
            learn.model.eval()(torch.zeros(2, 4))
    except RuntimeError as exc:  # pragma: no cover
        pytest.skip(f"no fp16 autocast on the CPU in this torch: {exc}")
    return learn


def test_bf16_fit_trains_with_fp32_master_weights():
    dtypes = _Dtypes()
    learn = Learner(tiny_data(n=128, bs=16), tiny_model()).to_bf16()
    learn.fit(4, 1e-2, callbacks=[dtypes])
    assert dtypes.outputs == {torch.bfloat16}  # the forward ran under autocast
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    first, last = sum(dtypes.losses[:8]) / 8, sum(dtypes.losses[-8:]) / 8
    assert last < 0.8 * first  # it learns
    assert learn.recorder.val_losses[-1] < learn.recorder.val_losses[0]


def test_bf16_validation_and_predictions_are_float32():
    learn = Learner(tiny_data(), tiny_model()).to_bf16()
    preds, targets = learn.get_preds()
    assert preds.dtype == torch.float32 and torch.allclose(preds.sum(1), torch.ones(len(preds)), atol=1e-3)
    assert isinstance(learn.validate()[0], float)


def test_to_fp32_turns_autocast_off_again():
    dtypes = _Dtypes()
    learn = Learner(tiny_data(), tiny_model()).to_bf16().to_fp32()
    assert type(learn.precision) is Precision
    learn.fit(1, 1e-3, callbacks=[dtypes])
    assert dtypes.outputs == {torch.float32}


def test_fp16_scales_the_loss_on_the_cpu():
    """The gradients seen after backward are the true ones times the loss scale; the step unscales."""
    grads = {}

    class Grad(Callback):
        def __init__(self, key):
            self.key = key

        def on_backward_end(self, state):
            grads.setdefault(self.key, next(state.model.parameters()).grad.detach().clone())

    dtypes = _Dtypes()
    data = tiny_data(shuffle=False)
    Learner(data, tiny_model(), opt_func=torch.optim.SGD, wd=0.0).fit(1, 0.0, callbacks=[Grad("fp32")])
    learn = _fp16(Learner(data, tiny_model(), opt_func=torch.optim.SGD, wd=0.0), loss_scale=1024.0)
    learn.fit(1, 0.0, callbacks=[Grad("fp16"), dtypes])
    assert dtypes.outputs == {torch.float16}
    assert torch.allclose(grads["fp16"] / 1024.0, grads["fp32"], rtol=2e-2, atol=1e-4)
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert learn.precision.loss_scale == 1024.0  # no overflow, fewer than growth_interval steps


@pytest.mark.parametrize("dynamic", [True, False])
def test_fp16_overflow_skips_the_step(dynamic):
    overflow = _Overflow(at=2)
    learn = _fp16(Learner(tiny_data(), tiny_model()), loss_scale=1024.0, dynamic=dynamic)
    learn.fit(1, 1e-2, callbacks=[overflow])
    for a, b in zip(overflow.before, overflow.after):
        assert torch.equal(a, b)  # the weights did not move in the overflowing step
    assert learn.precision.loss_scale == (512.0 if dynamic else 1024.0)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_loss_scale_round_trips_through_a_checkpoint(tmp_path):
    learn = _fp16(Learner(tiny_data(), tiny_model(), path=tmp_path), loss_scale=1024.0)
    learn.fit(1, 1e-2, callbacks=[_Overflow(at=1)])
    saved = learn.precision.scaler.state_dict()
    assert saved["scale"] == 512.0 and saved["_growth_tracker"] > 0
    learn.save("fp16")
    other = _fp16(Learner(tiny_data(), tiny_model(), path=tmp_path), loss_scale=8.0)
    other.load("fp16")
    assert other.precision.scaler.state_dict() == saved
    other.fit(1, 1e-2)  # and training goes on from there
    assert other.precision.loss_scale == 512.0
    assert other.precision.scaler.state_dict()["_growth_tracker"] == saved["_growth_tracker"] + 4


def test_precision_state_is_json_numbers_and_tolerates_floats():
    fp16 = FP16(loss_scale=64.0, device="cpu")
    state = fp16.state_dict()
    assert state["name"] == "fp16" and isinstance(state["scaler"]["growth_interval"], int)
    older = {"name": "fp16", "scaler": {**state["scaler"], "growth_interval": 2000.0, "_growth_tracker": 3.0}}
    fresh = FP16(device="cpu")
    fresh.load_state_dict(older)
    assert fresh.scaler.state_dict()["_growth_tracker"] == 3
    assert BF16().state_dict() == {"name": "bf16"} and Precision().loss_scale == 1.0


def test_make_precision_names():
    assert isinstance(make_precision("bf16"), BF16)
    assert isinstance(make_precision("fp16", "cpu"), FP16)
    assert type(make_precision("fp32")) is Precision
    from learnkit.errors import UsageError

    with pytest.raises(UsageError):
        make_precision("fp8")


def test_channels_last_keeps_the_parameters_and_trains():
    from torch import nn

    from learnkit import DataBunch

    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 2, (16,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2))
    learn = Learner(DataBunch(loader, loader, classes=["a", "b"], device="cpu"), model)
    learn.create_opt(1e-2)
    params = list(learn.model.parameters())
    learn.to_channels_last()
    assert list(learn.model.parameters()) == params  # the optimizer still holds them
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    learn.fit(1, 1e-2)
    assert torch.isfinite(torch.tensor(learn.recorder.losses)).all()


# --- CUDA only ---
@pytest.mark.gpu
def test_fp16_on_cuda_trains_with_fp32_weights():
    dtypes = _Dtypes()
    data = tiny_data(n=128, bs=16)
    learn = Learner(data.to(torch.device("cuda")), tiny_model()).to_fp16()
    learn.fit(3, 1e-2, callbacks=[dtypes])
    assert dtypes.outputs == {torch.float16}
    assert learn.precision.device == "cuda"
    assert all(p.dtype == torch.float32 and p.is_cuda for p in learn.model.parameters())
    assert sum(dtypes.losses[-8:]) < sum(dtypes.losses[:8])


@pytest.mark.gpu
def test_bf16_and_channels_last_on_cuda():
    from torch import nn

    from learnkit import DataBunch

    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 2, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    model.append(nn.Flatten()).append(nn.Linear(8, 2))
    data = DataBunch(loader, loader, classes=["a", "b"], device="cuda")
    dtypes = _Dtypes()
    learn = Learner(data, model).to_bf16().to_channels_last()
    learn.fit(2, 1e-2, callbacks=[dtypes])
    assert learn.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert dtypes.outputs == {torch.bfloat16}
    assert torch.isfinite(torch.tensor(learn.recorder.losses)).all()


@pytest.mark.gpu
def test_the_command_line_learner_is_channels_last_on_cuda(tmp_path):
    from learnkit.jobs import setup
    from tests.cli.conftest import make_image_folder

    folder = make_image_folder(tmp_path / "data")
    learn = setup.build_learner(folder, "simple_cnn", size=32, bs=8, device="cuda", precision="fp16")
    conv = next(m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert isinstance(learn.precision, FP16)
