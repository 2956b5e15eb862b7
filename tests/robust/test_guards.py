"""TerminateOnNaN, CSVLogger, the monitor options and the torn-save fallback, each with a real tiny fit."""

from __future__ import annotations

import math

import pytest
import torch

from learnkit.callback import Callback
from learnkit.callbacks.csv_logger import CSVLogger
from learnkit.callbacks.terminate_on_nan import TerminateOnNaN, weights_finite
from learnkit.checkpoint import MODEL_FORMAT, optimizer_path, read_safetensors
from learnkit.errors import LearnkitError, UsageError
from learnkit.jobs.fitting import run_fit
from learnkit.jobs.setup import build_learner
from learnkit.persist import previous_path


class PoisonAt(Callback):
    """Makes the loss of one training batch NaN (so its step makes every weight NaN)."""

    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_backward_begin(self, state):
        if (state.epoch, state.num_batch) == (self.epoch, self.batch):
            state.last_loss = state.last_loss * float("nan")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _learner(folder, path, **kw):
    return build_learner(str(folder), "simple_cnn", bs=4, size=16, seed=0, path=path, device="cpu", **kw)


@pytest.mark.parametrize("check_every", [None, 1, 5])
def test_terminate_on_nan_names_the_batch_and_keeps_the_last_good_one(tiny_folder, tmp_path, check_every):
    learn = _learner(tiny_folder, tmp_path)
    learn.callbacks.append(PoisonAt(epoch=1, batch=2))
    with pytest.raises(LearnkitError, match="NaN or infinite at epoch 1, batch 2") as err:
        run_fit(learn, 3, 1e-3, check_nan_every=check_every)
    assert err.value.exit_code == 1
    assert "last good checkpoint is" in str(err.value)
    _, meta = read_safetensors(tmp_path / "models" / "last.safetensors", MODEL_FORMAT)  # finite: it loads
    assert meta["step"].startswith("1.")  # saved at the end of epoch 1 (index 0), not after the NaN
    assert not weights_finite(learn.model)


def test_an_interrupted_run_with_nan_weights_does_not_overwrite_last(tiny_folder, tmp_path):
    import os
    import signal

    from learnkit.errors import RunInterrupted

    class InterruptAt(PoisonAt):
        def on_batch_end(self, state):
            if state.train and (state.epoch, state.num_batch) == (self.epoch, self.batch + 1):
                os.kill(os.getpid(), signal.SIGINT)

    learn = _learner(tiny_folder, tmp_path)
    learn.callbacks.append(InterruptAt(epoch=1, batch=2))
    with pytest.raises(RunInterrupted, match="no longer finite: nothing saved"):
        run_fit(learn, 3, 1e-3)
    _, meta = read_safetensors(tmp_path / "models" / "last.safetensors", MODEL_FORMAT)
    assert meta["step"].startswith("1.")


def test_terminate_on_nan_alone_stops_the_fit(tiny_folder, tmp_path):
    learn = _learner(tiny_folder, tmp_path)
    nan = TerminateOnNaN(learn, check_every=None)
    learn.fit(2, 1e-3, callbacks=[PoisonAt(0, 0), nan])
    assert nan.stopped_at == (0, 0) and "epoch 0, batch 0" in nan.message
    assert len(learn.recorder.history) == 1  # the epoch's row is there; no second epoch ran


def test_csv_logger_appends_drops_redone_and_torn_rows(tiny_folder, tmp_path):
    learn = _learner(tiny_folder, tmp_path)
    learn.fit(2, 1e-3, callbacks=[CSVLogger(learn)])
    file = tmp_path / "history.csv"
    lines = file.read_text().splitlines()
    assert lines[0] == ",".join(learn.recorder.names) == "epoch,train_loss,valid_loss,accuracy,lr,mom,time"
    assert len(lines) == 3
    file.write_text(file.read_text() + "2,0.5\n")  # a row torn by a crash
    learn.epoch = 1  # as if resumed from the end of epoch 1: epoch index 1 is done again
    learn.fit(1, 1e-3, callbacks=[CSVLogger(learn, append=True)])
    rows = [line.split(",") for line in file.read_text().splitlines()]
    assert [r[0] for r in rows] == ["epoch", "0", "1"]
    assert all(len(r) == 7 for r in rows) and math.isfinite(float(rows[2][2]))
    assert float(rows[2][4]) == pytest.approx(1e-3)  # the lr column: a constant-rate fit's lr


def test_monitor_saves_best_and_patience_stops(tiny_folder, tmp_path):
    learn = _learner(tiny_folder, tmp_path)
    result = run_fit(learn, 30, 1e-2, monitor="valid_loss", patience=0)
    assert (tmp_path / "models" / "best.safetensors").is_file()
    assert len(result["history"]) < 30  # stopped early
    with pytest.raises(UsageError, match="did you mean accuracy"):
        run_fit(_learner(tiny_folder, tmp_path / "x"), 1, 1e-3, monitor="acuracy")
    run_fit(_learner(tiny_folder, tmp_path / "y"), 1, 1e-3, monitor="accuracy", save_best=False)
    assert not (tmp_path / "y" / "models" / "best.safetensors").exists()


def test_a_save_torn_between_its_renames_still_loads_the_previous_pair(tiny_folder, tmp_path, monkeypatch):
    import learnkit.checkpoint as ckpt

    learn = _learner(tiny_folder, tmp_path)
    learn.fit(1, 1e-3)
    learn.save("last")
    saved = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, 1e-3)
    real_replace, calls = ckpt.os.replace, []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the model file's rename never happens
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        learn.save("last")
    monkeypatch.undo()
    model = tmp_path / "models" / "last.safetensors"
    assert previous_path(optimizer_path(model)).is_file()
    fresh = _learner(tiny_folder, tmp_path)
    fresh.load("last", with_opt=True)  # the old model with the old optimizer file
    assert (fresh.epoch, fresh.batch) == (1, 0)
    assert all(torch.equal(saved[k], v) for k, v in fresh.model.state_dict().items())
