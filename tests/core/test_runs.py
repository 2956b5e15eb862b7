"""Run folders under runs/: numbering, the latest run, and what --model may name."""

import os
from pathlib import Path

import pytest

from learnkit.errors import CheckpointError, UsageError
from learnkit.jobs.config import RunConfig
from learnkit.jobs.runs import data_task, latest_run, locate_model, new_run_path, place_run


def make_run(folder: Path, command: str = "fit", names=("best", "last"), mtime: float | None = None) -> Path:
    (folder / "models").mkdir(parents=True)
    (folder / "config.yaml").write_text(f"command: {command}\n")
    for n in names:
        (folder / "models" / f"{n}.safetensors").write_bytes(b"x")
    if mtime is not None:
        for f in [folder / "config.yaml", *(folder / "models").iterdir()]:
            os.utime(f, (mtime, mtime))
    return folder


def test_new_run_path_numbers_and_names(tmp_path):
    assert new_run_path("fit", root=tmp_path) == tmp_path / "runs" / "fit" / "1"
    make_run(tmp_path / "runs" / "fit" / "1")
    make_run(tmp_path / "runs" / "fit" / "7")
    assert new_run_path("fit", root=tmp_path) == tmp_path / "runs" / "fit" / "8"
    assert new_run_path("unet", root=tmp_path) == tmp_path / "runs" / "unet" / "1"
    assert new_run_path("fit", "demo", root=tmp_path) == tmp_path / "runs" / "demo"
    with pytest.raises(UsageError):
        new_run_path("fit", "a/b", root=tmp_path)


def test_latest_run_by_time_and_task(tmp_path):
    assert latest_run(tmp_path) is None
    old = make_run(tmp_path / "runs" / "fit" / "1", mtime=1_000_000)
    seg = make_run(tmp_path / "runs" / "unet" / "1", command="unet", mtime=3_000_000)
    (tmp_path / "runs" / "lr-find" / "1" / "plots").mkdir(parents=True)  # no run files: not a run
    assert latest_run(tmp_path) == seg
    assert latest_run(tmp_path, task="classification") == old
    assert latest_run(tmp_path, task="segmentation") == seg


def test_locate_model_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="no run found"):
        locate_model("best")
    a = make_run(Path("runs/fit/1"), names=("last",), mtime=1_000_000)
    b = make_run(Path("runs/fit-one-cycle/1"), command="fit-one-cycle", mtime=2_000_000)
    file, run, note = locate_model("best")  # a name: the latest run's, said in the note
    assert (file, run) == (b / "models/best.safetensors", b) and str(b) in note
    assert locate_model("last", "runs/fit/1") == (a / "models/last.safetensors", a, None)
    assert locate_model(str(a))[:2] == (a / "models/last.safetensors", a)  # a run folder: best else last
    assert locate_model("runs/fit-one-cycle/1/models/best")[:2] == (b / "models/best.safetensors", b)
    assert locate_model("w.safetensors")[0] == Path("w.safetensors")  # a file, as given
    make_run(Path("."), names=("best",))  # the current folder is a run: it wins, silently
    assert locate_model("best") == (Path("models/best.safetensors"), Path("."), None)


def test_place_run(tmp_path):
    cfg = RunConfig.from_flat("fit", data="sample:shapes", arch="simple_cnn")
    unplaced = cfg.__class__(**{**cfg.__dict__, "checkpoint": cfg.checkpoint.__class__(path=None)})
    placed, note = place_run(unplaced, root=tmp_path)
    assert placed.checkpoint.path == str(tmp_path / "runs" / "fit" / "1") and note is None
    given = RunConfig.from_flat("fit", data="sample:shapes", arch="simple_cnn", path="mine")
    assert place_run(given, root=tmp_path)[0] is given  # a --path is kept
    run = make_run(tmp_path / "runs" / "fit" / "1")
    resume = unplaced.__class__(
        **{**unplaced.__dict__, "checkpoint": unplaced.checkpoint.__class__(path=None, resume="last")}
    )
    placed, note = place_run(resume, root=tmp_path)
    assert placed.checkpoint.path == str(run) and placed.checkpoint.resume == "last" and str(run) in note


def test_data_task(tmp_path):
    assert data_task("sample:shapes-seg") == "segmentation" and data_task("sample:shapes") == "classification"
    (tmp_path / "masks").mkdir()
    (tmp_path / "codes.txt").write_text("a\n")
    assert data_task(tmp_path) == "segmentation"
