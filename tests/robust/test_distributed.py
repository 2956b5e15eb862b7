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

from learnkit.cli.launch import (
    _torchrun_options,
    normalize_args,
    torchrun_as_run,
    torchrun_command,
    without_nproc,
)
from learnkit.errors import UsageError
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
    # the process count is recorded, and a resume by another count is refused before the data is read
    assert "  nproc: 2\n" in (tmp_path / "ddp" / "config.yaml").read_text()
    resume = RunConfig.from_flat(
        "fit-one-cycle", data="sample:shapes", arch="simple_cnn", epochs=5, lr=3e-3, bs=32, seed=0,
        device="cpu", path=ddp, resume="last",
    )  # fmt: skip
    with pytest.raises(UsageError, match=r"trained by 2 processes .*this one has 1: resume with --nproc 2"):
        run(resume)


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


def test_resume_hint_repeats_the_torchrun_command(monkeypatch):
    typed = ["/venv/bin/python", "/venv/bin/torchrun", "--nnodes", "2", "--nproc-per-node=4",
             "--rdzv-backend", "c10d", "--rdzv-endpoint", "node0:29400",
             "-m", "learnkit", "fit", "d"]  # fmt: skip
    assert _torchrun_options(typed) == typed[2:9]
    python_m = ["python", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lk"]
    assert _torchrun_options(python_m) == ["--standalone", "--nproc-per-node", "2"]
    import learnkit.cli.launch as launch

    monkeypatch.setattr(launch, "_parent_cmdline", lambda: typed)
    assert torchrun_as_run(["fit", "d", "--resume", "last"]) == [
        "torchrun",
        *typed[2:9],
        "-m",
        "learnkit",
        "fit",
        "d",
        "--resume",
        "last",
    ]
    monkeypatch.setattr(launch, "_parent_cmdline", lambda: [])  # not readable: from the environment
    for k, v in {"LOCAL_WORLD_SIZE": "4", "GROUP_WORLD_SIZE": "2", "GROUP_RANK": "1", "MASTER_ADDR": "node0",
                 "MASTER_PORT": "29400"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    hint = torchrun_as_run(["fit", "d"])
    assert hint[:7] == ["torchrun", "--nnodes", "2", "--nproc-per-node", "4", "--node-rank", "1"]
    assert "node0:29400" in hint
