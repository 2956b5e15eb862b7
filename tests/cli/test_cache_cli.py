"""``--cache``, ``--workers`` and ``--precision`` reach the library from ``fit``, ``fit-one-cycle``
and ``unet``."""

import json

import pytest
from typer.testing import CliRunner

from learnkit.checkpoint import read_safetensors
from learnkit.cli.app import app
from learnkit.jobs import setup as jobs_setup

cli = CliRunner(env={"CI": "1"})
TINY = ["--arch", "simple_cnn", "--epochs", "1", "--size", "16", "--bs", "8", "--seed", "0"]
TINY += ["--device", "cpu"]


@pytest.fixture
def data_calls(monkeypatch) -> list[dict]:
    """The keyword arguments of every ``learnkit.jobs.setup.load_data`` call (which then runs as usual)."""
    calls: list[dict] = []
    original = jobs_setup.load_data

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(jobs_setup, "load_data", recording)
    return calls


def test_fit_with_cache_none_and_bf16(tmp_path, image_folder, data_calls):
    args = ["fit", str(image_folder), *TINY, "--cache", "none", "--precision", "bf16"]
    result = cli.invoke(app, [*args, "--path", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.stderr
    assert data_calls[-1]["cache"] == "none" and data_calls[-1]["workers"] is None  # the default: auto
    assert 0 <= json.loads(result.stdout)["accuracy"] <= 1
    _, meta = read_safetensors(tmp_path / "models" / "last.opt.safetensors")
    assert meta["precision"]["name"] == "bf16"


def test_fit_one_cycle_defaults_to_the_auto_cache(tmp_path, image_folder, data_calls):
    args = ["fit-one-cycle", str(image_folder), *TINY, "--path", str(tmp_path), "--dry-run"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert data_calls[-1]["cache"] == "auto" and data_calls[-1]["workers"] is None


def test_explicit_workers_are_passed_on(tmp_path, image_folder, data_calls):
    args = ["fit-one-cycle", str(image_folder), *TINY, "--workers", "0", "--cache", "ram", "--dry-run"]
    result = cli.invoke(app, [*args, "--path", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert data_calls[-1]["cache"] == "ram" and data_calls[-1]["workers"] == 0


@pytest.mark.parametrize("bad", [["--cache", "disk"], ["--workers", "-1"], ["--precision", "fp8"]])
def test_bad_values_are_usage_errors(image_folder, bad):
    result = cli.invoke(app, ["fit", str(image_folder), *TINY, *bad])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {bad[0]} (")  # refused for that option


def test_unet_takes_the_cache_and_workers_options(tmp_path, data_calls):
    args = [
        "unet",
        "sample:shapes-seg",
        "--arch",
        "simple_cnn",
        "--size",
        "16",
        "--epochs",
        "1",
        "--seed",
        "0",
    ]
    args += ["--device", "cpu", "--cache", "none", "--workers", "0", "--path", str(tmp_path), "--json"]
    result = cli.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert data_calls[-1]["cache"] == "none" and data_calls[-1]["workers"] == 0
    assert data_calls[-1]["task"] == "segmentation"
