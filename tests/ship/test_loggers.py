"""The logger registry (entry-point group ``learnkit.loggers``) and the TensorBoard logger."""

import importlib.metadata

import pytest

from learnkit import Learner
from learnkit.callbacks.csv_logger import CSVLogger
from learnkit.callbacks.tensorboard import TensorBoardLogger
from learnkit.errors import UsageError
from learnkit.loggers import ENTRY_POINT_GROUP, check_names, create_loggers, names
from learnkit.metrics import accuracy
from tests.core.tiny import tiny_data, tiny_model


def test_builtins_are_declared_as_entry_points():
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    assert eps.get("csv") == "learnkit.loggers.builtin:csv"
    assert eps.get("tensorboard") == "learnkit.loggers.builtin:tensorboard"
    assert {"csv", "tensorboard"} <= set(names())


def test_unknown_logger_names_the_close_ones():
    with pytest.raises(UsageError, match="tensorboard"):
        check_names(["tensorbord"])
    assert check_names(["csv", "tensorboard", "csv"]) == ["csv", "tensorboard"]


def _scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(folder.rglob("events.out.tfevents*"))
    assert files, "no event file"
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_logs_steps_and_epochs(tmp_path):
    learn = Learner(tiny_data(), tiny_model(), metrics=[accuracy], path=tmp_path)
    callbacks = create_loggers(["csv", "tensorboard"], learn)
    assert [type(c) for c in callbacks] == [CSVLogger, TensorBoardLogger]
    learn.fit_one_cycle(2, 1e-2, callbacks=callbacks)
    scalars = _scalars(tmp_path / "tensorboard")
    n_steps = len(learn.recorder.lrs)
    assert n_steps == 8  # 64 items / bs 16, 2 epochs
    for tag in ("train/loss", "train/lr", "train/mom"):
        assert len(scalars[tag]) == n_steps, tag
    # the lr per step is the Recorder's (the 1cycle trace), momentum likewise
    assert [v for _, v in scalars["train/lr"]] == pytest.approx(learn.recorder.lrs, rel=1e-6)
    assert [v for _, v in scalars["train/mom"]] == pytest.approx(learn.recorder.moms, rel=1e-6)
    for tag in ("epoch/train_loss", "epoch/valid_loss", "epoch/accuracy", "epoch/lr", "epoch/mom"):
        assert len(scalars[tag]) == 2, tag
    history = learn.recorder.history
    assert [v for _, v in scalars["epoch/valid_loss"]] == pytest.approx([r["valid_loss"] for r in history])
    assert (tmp_path / "history.csv").read_text().count("\n") == 3


def test_logger_option_goes_through_the_run_config(tmp_path):
    """``--logger tensorboard`` on the installed command: event files, and config.yaml records it."""
    from tests.cli.conftest import make_image_folder, run_learnkit

    data = make_image_folder(tmp_path / "d")
    run = tmp_path / "run"
    proc = run_learnkit(
        "fit", str(data), "--arch", "simple_cnn", "--size", "16", "--bs", "8", "--epochs", "1",
        "--seed", "0", "--path", str(run), "--logger", "tensorboard",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert list((run / "tensorboard").glob("events.out.tfevents*"))
    assert (run / "history.csv").is_file()  # csv is always kept
    assert "- tensorboard" in (run / "config.yaml").read_text()
    bad = run_learnkit("fit", str(data), "--arch", "simple_cnn", "--path", str(tmp_path / "r2"),
                       "--logger", "tensorbord")  # fmt: skip
    assert bad.returncode == 2 and "did you mean tensorboard" in bad.stderr
