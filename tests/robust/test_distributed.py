"""Data-parallel training over 2 gloo processes on this CPU machine (torchrun, and ``--nproc``).

The 2-process run uses half the per-process batch size, so its effective batch (bs x world size)
and its number of steps equal the single-process run's: both should land in the same accuracy
band. Its reduced validation metrics must equal a single-process evaluation of the weights it
saved (validation is sharded without padding, so every image counts once).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from learnkit.cli.launch import normalize_args, torchrun_command, without_nproc
from learnkit.jobs import evaluate
from learnkit.jobs.config import RunConfig
from learnkit.jobs.train import run

from .conftest import cli_env, learnkit_exe

SAMPLE_RUN = ["--arch", "simple_cnn", "--epochs", "5", "--lr", "3e-3", "--seed", "0", "--device", "cpu"]


def _torchrun() -> list[str]:
    beside = Path(sys.executable).with_name("torchrun")
    exe = str(beside) if beside.exists() else shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.slow
def test_two_gloo_processes_train_like_one_and_reduce_metrics_exactly(tmp_path):
    torch.set_num_threads(1)
    single = run(
        RunConfig.from_flat(
            "fit-one-cycle", data="sample:shapes", arch="simple_cnn", epochs=5, lr=3e-3, bs=64, seed=0,
            device="cpu", path=str(tmp_path / "one"),
        )
    )  # fmt: skip
    ddp = str(tmp_path / "ddp")
    args = [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "learnkit", "fit-one-cycle",
            "sample:shapes", *SAMPLE_RUN, "--bs", "32", "--path", ddp, "--json"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # one JSON document: only rank 0 prints
    assert result["accuracy"] > 0.6 and single["accuracy"] > 0.6
    assert abs(result["accuracy"] - single["accuracy"]) <= 0.15, (result["accuracy"], single["accuracy"])
    assert sorted(p.name for p in (tmp_path / "ddp" / "models").iterdir()) == [
        "best.safetensors",
        "last.opt.safetensors",
        "last.safetensors",
    ]
    again = evaluate.validate("sample:shapes", "last", path=tmp_path / "ddp", device="cpu")
    assert again["items"] == 120
    assert again["accuracy"] == pytest.approx(result["accuracy"], abs=1e-9)
    assert again["valid_loss"] == pytest.approx(result["valid_loss"], rel=1e-5)


@pytest.mark.slow
def test_nproc_relaunches_under_torchrun_and_keeps_exit_codes(tiny_folder, tmp_path):
    base = [learnkit_exe(), "fit", str(tiny_folder), "--arch", "simple_cnn", "--size", "16", "--bs", "4",
            "--device", "cpu", "--nproc", "2"]  # fmt: skip
    ok = subprocess.run([*base, "--path", str(tmp_path / "run"), "--json"], capture_output=True, text=True,
                        env=cli_env(), timeout=300)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["epochs"] == 1
    assert "torch/distributed" not in ok.stderr and "*****" not in ok.stderr, ok.stderr
    bad = [learnkit_exe(), "fit", str(tmp_path / "missing"), "--arch", "simple_cnn", "--device", "cpu",
           "--nproc", "2"]  # fmt: skip
    failed = subprocess.run(bad, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert failed.returncode == 3, failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data not found"), failed.stderr


def test_launch_argv_helpers():
    assert without_nproc(["fit", "d", "--nproc", "2", "--bs", "8", "--nproc=3"]) == ["fit", "d", "--bs", "8"]
    cmd = torchrun_command(2, ["fit", "d", "--nproc", "2"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                       "-m", "learnkit", "fit", "d"]  # fmt: skip
    assert normalize_args(["fit", "d", "--resume"]) == ["fit", "d", "--resume", "last"]
    assert normalize_args(["d", "--resume", "--bs", "2"]) == ["d", "--resume", "last", "--bs", "2"]
    assert normalize_args(["fit", "d", "--resume", "best"]) == ["fit", "d", "--resume", "best"]
