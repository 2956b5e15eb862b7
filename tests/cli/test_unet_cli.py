"""``learnkit unet`` through the installed command: a tiny run, its JSON, its checkpoint, and
``learnkit validate`` reporting pixel metrics for it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from .conftest import run_learnkit

CODES = ["background", "square"]


def make_seg_folder(root: Path, n: int = 10, size: int = 24) -> Path:
    """``images/``, ``masks/`` and ``codes.txt``: one bright square per image on a dark background."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "codes.txt").write_text("\n".join(CODES) + "\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        x, y = rng.integers(0, size // 2, 2)
        img[y : y + size // 2, x : x + size // 2] = (220, 200, 40)
        mask[y : y + size // 2, x : x + size // 2] = 1
        Image.fromarray(img).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory) -> dict:
    data = make_seg_folder(tmp_path_factory.mktemp("seg"))
    run = tmp_path_factory.mktemp("unet-run")
    proc = run_learnkit(
        "unet", str(data), "--arch", "mobilenet_v3_small", "--epochs", "1", "--size", "32", "--bs", "4",
        "--seed", "0", "--device", "cpu", "--self-attention", "--monitor", "dice", "--path", str(run),
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {"result": json.loads(proc.stdout), "data": data, "path": run, "stderr": proc.stderr}


@pytest.mark.slow
def test_unet_json_has_dice_iou_history_and_checkpoints(unet_run):
    result = unet_run["result"]
    assert {"dice", "iou", "pixel_accuracy", "valid_loss", "history", "checkpoint", "best"} <= set(result)
    assert 0 <= result["dice"] <= 1 and 0 <= result["iou"] <= result["dice"] + 1e-9
    assert result["history"][-1]["dice"] == result["dice"]
    assert set(result["dice_per_class"]) == set(CODES) and result["classes"] == CODES
    assert Path(result["checkpoint"]).is_file() and Path(result["best"]).is_file()
    assert "dice" in unet_run["stderr"]  # the per-epoch table goes to stderr under --json


@pytest.mark.slow
def test_validate_reports_pixel_metrics_for_a_segmentation_checkpoint(unet_run):
    proc = run_learnkit(
        "validate", str(unet_run["data"]), "--model", "last", "--path", str(unet_run["path"]),
        "--bs", "4", "--seed", "0", "--device", "cpu", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert "accuracy" not in result
    assert result["dice"] == pytest.approx(unet_run["result"]["dice"], abs=1e-6)
    assert result["pixel_accuracy"] == pytest.approx(unet_run["result"]["pixel_accuracy"], abs=1e-6)


def test_unet_rejects_a_bad_y_range():
    from typer.testing import CliRunner

    from learnkit.cli.app import app

    result = CliRunner(env={"CI": "1"}).invoke(
        app, ["unet", "sample:shapes-seg", "--arch", "resnet18", "--y-range", "2,1"]
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: --y-range (model.unet.y_range): [2.0, 1.0]: LO must be below HI")


def test_unet_refuses_an_arch_without_a_cut_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from learnkit import registry
    from learnkit.cli.app import app

    registry.register("no_cut_net", lambda n_out, **kwargs: torch.nn.Conv2d(3, n_out, 1))
    try:
        args = ["unet", "sample:shapes-seg", "--arch", "no_cut_net", "--path", str(tmp_path / "run")]
        result = CliRunner().invoke(app, args)
    finally:
        registry._reset()
    assert result.exit_code == 2 and "cannot serve" in result.stderr
    assert not (tmp_path / "run").exists()
