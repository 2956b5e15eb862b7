"""The CUDA path: fp16 loss-scale state across save and resume, channels-last activations, no host
sync per training batch, bf16/fp16 steps, the CUDA RNG state in checkpoints, exact resume.

Every test here needs a CUDA device (marker ``gpu``: skipped elsewhere). ``bench/gpu.sh`` runs
them on a GPU machine. Their CPU counterparts are in ``test_precision.py`` and
``tests/robust/test_interrupt.py``.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch

from learnkit import Callback, Learner
from learnkit.precision import FP16
from tests.core.tiny import tiny_data, tiny_model

pytestmark = pytest.mark.gpu

DEVICE = "cuda"


class _Overflow(Callback):
    """Puts an inf into one gradient at training iteration ``at`` (the scaler must skip that step)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_backward_end(self, state) -> None:
        if state.train and state.iteration == self.at:
            next(state.model.parameters()).grad.view(-1)[0] = float("inf")


class _Losses(Callback):
    """The training losses (floats, read after the fit) and the dtype of the model's outputs."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.outputs: set[torch.dtype] = set()

    def on_loss_begin(self, state) -> None:
        self.outputs.add(state.last_output.dtype)

    def on_batch_end(self, state) -> None:
        if state.train:
            self.losses.append(state.last_loss.detach())  # no .item() here: read after the fit


def _image_learner(tmp_path, precision: str = "fp32", **kwargs):
    """The command line's Learner (zoo simple_cnn, image folder, RAM cache) on CUDA."""
    from learnkit.jobs.setup import build_learner
    from tests.cli.conftest import make_image_folder

    folder = tmp_path / "data"
    if not folder.exists():
        make_image_folder(folder, n_train=32, n_valid=8)
    return build_learner(
        str(folder), "simple_cnn", size=32, bs=8, seed=0, device=DEVICE, precision=precision, **kwargs
    )


def _first_last(values: list[torch.Tensor], n: int = 4) -> tuple[float, float]:
    xs = torch.stack(values).float().cpu()
    return float(xs[:n].mean()), float(xs[-n:].mean())


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_mixed_precision_steps_on_cuda_learn_with_fp32_weights(tmp_path, precision, dtype):
    record = _Losses()
    learn = _image_learner(tmp_path, precision)
    learn.fit(4, 3e-3, callbacks=[record])
    assert record.outputs == {dtype}
    assert all(p.device.type == DEVICE and p.dtype == torch.float32 for p in learn.model.parameters())
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    first, last = _first_last(record.losses)
    assert last < first, (first, last)


def test_fp16_scaler_state_survives_save_and_resume_on_cuda(tmp_path):
    data = tiny_data(n=128, bs=16).to(torch.device(DEVICE))
    learn = Learner(data, tiny_model(), path=tmp_path).to_fp16(loss_scale=1024.0)
    learn.fit(1, 1e-2, callbacks=[_Overflow(at=1)])  # one skipped step: the scale halves
    saved = learn.precision.scaler.state_dict()
    assert saved["scale"] == 512.0 and saved["_growth_tracker"] == 6  # 8 batches, 6 since the overflow
    learn.save("fp16")

    other = Learner(data, tiny_model(seed=1), path=tmp_path).to_fp16(loss_scale=8.0)
    other.load("fp16")
    assert isinstance(other.precision, FP16) and other.precision.device == "cuda"
    assert other.precision.scaler.state_dict() == saved
    other.fit(1, 1e-2)
    assert other.precision.loss_scale == 512.0
    assert other.precision.scaler.state_dict()["_growth_tracker"] == saved["_growth_tracker"] + 8
    assert all(torch.isfinite(p).all() for p in other.model.parameters())


def test_the_command_line_learner_runs_convolutions_channels_last_on_cuda(tmp_path):
    learn = _image_learner(tmp_path, "bf16")
    convs = [m for m in learn.model.modules() if isinstance(m, torch.nn.Conv2d)]
    seen: list[bool] = []
    hooks = [
        conv.register_forward_hook(
            lambda m, i, out: seen.append(out.is_contiguous(memory_format=torch.channels_last))
        )
        for conv in convs
    ]
    try:
        learn.fit(1, 1e-3)
    finally:
        for h in hooks:
            h.remove()
    assert convs and seen and all(seen)  # the activations, not only the weights, are channels-last
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


class _NoSyncWindow(Callback):
    """Makes every host-device synchronisation an error from training batch ``start`` to ``stop``
    (inclusive), data loading between those batches included."""

    def __init__(self, start: int, stop: int, edge: str) -> None:
        self.start, self.stop, self.edge = start, stop, edge
        self.order = -(10**9) if edge == "begin" else 10**9
        self.batches = 0

    def on_batch_begin(self, state) -> None:
        if self.edge == "begin" and state.train and state.epoch == 0 and state.num_batch == self.start:
            torch.cuda.set_sync_debug_mode("error")

    def on_batch_end(self, state) -> None:
        if self.edge == "end" and state.train and state.epoch == 0 and state.num_batch == self.stop:
            torch.cuda.set_sync_debug_mode(0)
            self.batches += 1

    def on_train_end(self, state) -> None:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_no_host_sync_per_training_batch_on_cuda(tmp_path, precision):
    """The CLI's whole fit (1cycle, NaN guard, checkpoints, Recorder, augmentation) syncs at epoch
    ends and every ``check_nan_every`` batches, never inside batches 1-5. fp16 is left out: torch's
    GradScaler reads ``found_inf`` on the host at every step."""
    from learnkit.jobs.fitting import run_fit

    learn = _image_learner(tmp_path, precision, path=tmp_path / "run")
    begin, end = _NoSyncWindow(1, 5, "begin"), _NoSyncWindow(1, 5, "end")
    learn.callbacks += [begin, end]
    try:
        run_fit(learn, 1, 1e-3, schedule="one_cycle", check_nan_every=50)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert end.batches == 1  # the window was opened and closed inside the run


def test_the_cuda_rng_state_round_trips_through_a_checkpoint(tmp_path):
    learn = Learner(tiny_data().to(torch.device(DEVICE)), tiny_model(), path=tmp_path)
    learn.fit(1, 1e-3)
    torch.cuda.manual_seed_all(1234)
    torch.rand(5, device=DEVICE)  # move the generator off its seed
    file = learn.save("rng", with_opt=True)
    expected = torch.rand(8, device=DEVICE)
    from safetensors import safe_open

    with safe_open(str(file).replace(".safetensors", ".opt.safetensors"), "pt") as f:
        assert "rng.cuda.0" in f.keys()
    torch.cuda.manual_seed_all(99)
    learn.load("rng", with_opt=True)
    assert torch.equal(torch.rand(8, device=DEVICE), expected)


class _SignalAt(Callback):
    order = 500

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, state) -> None:
        if state.train and (state.epoch, state.num_batch) == (self.epoch, self.batch):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_an_interrupted_cuda_run_resumes_to_the_same_weights(tmp_path, precision):
    from learnkit.errors import RunInterrupted
    from learnkit.jobs.fitting import deterministic_mode, run_fit

    with deterministic_mode(True):
        stopped = _image_learner(tmp_path, precision, path=tmp_path / "run")
        stopped.callbacks.append(_SignalAt(epoch=1, batch=3))
        with pytest.raises(RunInterrupted, match=r"after batch 4 of epoch 1 \(of 3\)"):
            run_fit(stopped, 3, 1e-3, schedule="one_cycle")
        resumed = _image_learner(tmp_path, precision, path=tmp_path / "run")
        result = run_fit(resumed, 3, 1e-3, schedule="one_cycle", resume="last")
        whole = _image_learner(tmp_path, precision, path=tmp_path / "whole")
        run_fit(whole, 3, 1e-3, schedule="one_cycle")
    assert result["resumed_from"] == {"epoch": 1, "batch": 4}
    a, b = resumed.model.state_dict(), whole.model.state_dict()
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, first {differ[0]}"
    if precision == "fp16":
        assert resumed.precision.scaler.state_dict() == whole.precision.scaler.state_dict()
