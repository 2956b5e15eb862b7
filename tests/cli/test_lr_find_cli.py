"""``learnkit lr-find`` and ``fit-one-cycle --dry-run`` through the installed command."""

from __future__ import annotations

import json
import math

import pytest
from PIL import Image

from tests.cli.conftest import run_learnkit


def _run(*args, cwd):
    return run_learnkit(*args, cwd=cwd)


@pytest.mark.slow
def test_lr_find_prints_suggestions_saves_a_plot_and_no_checkpoint(tmp_path):
    res = _run(
        "lr-find",
        "sample:shapes",
        "--arch",
        "simple_cnn",
        "--size",
        "16",
        "--bs",
        "32",
        "--num-it",
        "15",
        "--json",
        cwd=tmp_path,
    )  # no --path: a run folder of its own, runs/lr-find/1
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["plot"] == "runs/lr-find/1/plots/lr_find.png" and not (tmp_path / "plots").exists()
    assert f"plot: {out['plot']}" in res.stderr.splitlines()  # the path on stderr, as a fit's plots
    assert {"steep", "minimum", "valley", "suggestion", "plot"} <= out.keys()
    assert all(1e-7 <= out[k] <= 10 for k in ("steep", "minimum", "valley"))
    assert out["suggestion"] == out["valley"] and 2 <= out["iterations"] <= 15
    with Image.open(tmp_path / out["plot"]) as img:
        assert img.format == "PNG" and img.width > 200 and img.height > 150
    assert not (tmp_path / "runs" / "lr-find" / "1" / "models").exists()


def test_lr_find_refuses_a_bad_range(tmp_path):
    from typer.testing import CliRunner

    from learnkit.cli.app import app

    args = ["lr-find", "sample:shapes", "--arch", "simple_cnn", "--start-lr", "1", "--end-lr", "0.1"]
    res = CliRunner(env={"CI": "1"}).invoke(app, [*args, "--path", str(tmp_path)])
    assert res.exit_code == 2
    assert res.stderr == "error: need 0 < --start-lr < --end-lr, got 1 and 0.1\n"
    assert not any(tmp_path.iterdir())  # refused before anything ran


def test_dry_run_shows_the_fastai_schedule_without_training(tmp_path):
    res = _run(
        "fit-one-cycle",
        "sample:shapes",
        "--arch",
        "simple_cnn",
        "--size",
        "16",
        "--bs",
        "64",
        "--epochs",
        "2",
        "--lr",
        "1e-2",
        "--dry-run",
        "--path",
        "run",
        "--json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    n = plan["iterations"]
    a1 = int(n * 0.3)
    assert math.isclose(plan["first_lr"], 1e-2 / 25)
    assert plan["peak_iteration"] == a1 and math.isclose(plan["peak_lr"], 1e-2)
    last_p = (n - a1 - 1) / (n - a1)
    want_last = 1e-2 / 25e4 + (1e-2 - 1e-2 / 25e4) / 2 * (1 + math.cos(math.pi * last_p))
    assert math.isclose(plan["last_lr"], want_last, rel_tol=1e-6)
    assert not (tmp_path / "run" / "models").exists()
    assert (tmp_path / plan["plot"]).is_file()
