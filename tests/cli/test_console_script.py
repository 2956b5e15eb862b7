"""The installed ``learnkit`` command as a user meets it: results, and bad input answered with
one line, no traceback, and the exit code of DESIGN.md section 6.

One error of each exit code (2, 3, 4, 1) goes through the installed script (130: see
``tests/robust/test_interrupt.py``); the other one-line errors run in-process through
``CliRunner``, the same code path without a new interpreter each.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnkit.cli.app import app

from .conftest import make_image_folder, run_learnkit

runner = CliRunner(env={"CI": "1"})


def _one_clean_line(proc, code: int) -> str:
    """Assert the exit code and a one-line error without traceback; return that line.

    ``proc`` is the installed command's ``CompletedProcess`` or a ``CliRunner`` result.
    """
    exit_code = proc.returncode if hasattr(proc, "returncode") else proc.exit_code
    assert exit_code == code, (exit_code, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _invoke(*args: str):
    """``learnkit ARGS`` in this process."""
    return runner.invoke(app, list(args))


def test_fit_json_is_one_object_with_final_metrics_and_history(trained):
    result = trained["result"]
    assert {"train_loss", "valid_loss", "accuracy", "history", "checkpoint"} <= set(result)
    assert len(result["history"]) == 1
    assert result["history"][-1]["accuracy"] == result["accuracy"]
    assert Path(result["checkpoint"]).is_file()
    assert "\r" not in trained["stderr"]  # CI: plain lines, no animation
    assert "train_loss" in trained["stderr"]  # the epoch table goes to stderr under --json


def test_validate_agrees_with_the_fit(trained, image_folder):
    proc = run_learnkit(
        "validate",
        str(image_folder),
        "--model",
        "last",
        "--path",
        str(trained["path"]),
        "--bs",
        "8",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert abs(result["accuracy"] - trained["result"]["accuracy"]) < 1e-3
    assert abs(result["valid_loss"] - trained["result"]["valid_loss"]) < 1e-3


def test_missing_folder(tmp_path):
    proc = run_learnkit("fit", str(tmp_path / "nowhere"), "--arch", "simple_cnn", "--epochs", "1")
    assert "nowhere" in _one_clean_line(proc, 3)


def test_folder_without_images(tmp_path):
    for split in ("train", "valid"):
        (tmp_path / split / "cats").mkdir(parents=True)
        (tmp_path / split / "cats" / "notes.txt").write_text("not an image")
    result = _invoke("fit", str(tmp_path), "--arch", "simple_cnn", "--epochs", "1")
    assert "no images" in _one_clean_line(result, 3)


def test_unknown_arch_names_the_close_ones(image_folder):
    proc = run_learnkit("fit", str(image_folder), "--arch", "resnet19", "--epochs", "1")
    assert "resnet18" in _one_clean_line(proc, 2)


def test_bad_learning_rate_is_a_usage_error(image_folder):
    result = _invoke("fit", str(image_folder), "--arch", "simple_cnn", "--lr", "1e-3:fast")
    assert "--lr" in _one_clean_line(result, 2)


def test_checkpoint_of_another_class_count(trained, tmp_path):
    three = make_image_folder(tmp_path / "three", classes=("blue", "green", "red"), n_train=2, n_valid=2)
    proc = run_learnkit("validate", str(three), "--model", "last", "--path", str(trained["path"]))
    assert "not in the checkpoint: green" in _one_clean_line(proc, 3)  # data that is not the model's


def test_checkpoint_of_another_arch(trained, image_folder, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    source = trained["path"] / "models" / "last.safetensors"
    with safe_open(str(source), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = dict(f.metadata())
    spec = json.loads(meta["model_spec"])
    meta["model_spec"] = json.dumps({**spec, "kind": "cnn", "arch": "resnet18"})
    save_file(tensors, str(tmp_path / "other.safetensors"), metadata=meta)
    result = _invoke("validate", str(image_folder), "--model", str(tmp_path / "other.safetensors"))
    assert "weights do not fit the model" in _one_clean_line(result, 4)


@pytest.mark.parametrize("name", ["junk.safetensors", "notes.txt"])
def test_file_that_is_not_a_checkpoint(trained, image_folder, tmp_path, name):
    junk = tmp_path / name
    junk.write_text("not a checkpoint")
    result = _invoke("validate", str(image_folder), "--model", str(junk))
    assert str(junk) in _one_clean_line(result, 4)


def test_missing_checkpoint_lists_the_ones_there(trained, image_folder):
    result = _invoke("validate", str(image_folder), "--model", "nope", "--path", str(trained["path"]))
    line = _one_clean_line(result, 4)
    assert "last" in line and "best" in line  # a fit keeps both


def test_a_diverging_run_is_exit_1_in_one_line(tmp_path):
    data = make_image_folder(tmp_path / "data", n_train=4, n_valid=2)
    proc = run_learnkit(
        "fit", str(data), "--arch", "simple_cnn", "--epochs", "1", "--lr", "1e9", "--size", "16", "--bs", "4",
        "--seed", "0", "--device", "cpu", "--path", str(tmp_path / "run"),
    )  # fmt: skip
    assert "diverged" in _one_clean_line(proc, 1)
    assert not (tmp_path / "run" / "models" / "last.safetensors").exists()  # no NaN weights kept


def test_python_m_learnkit_is_the_same_command():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "learnkit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "fit" in proc.stdout


def test_summary_of_the_checkpoint(trained):
    proc = run_learnkit("summary", "--model", "last", "--path", str(trained["path"]), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["arch"] == "simple_cnn" and result["n_out"] == 2 and result["params"] > 0
