"""Fixtures for the command-line tests: tiny image folders and a trained checkpoint."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

COLOURS = {"blue": (30, 60, 220), "green": (40, 200, 60), "red": (220, 40, 40)}


def make_image_folder(root: Path, classes=("blue", "red"), n_train: int = 12, n_valid: int = 6) -> Path:
    """``root/train/<class>/*.png`` and ``root/valid/<class>/*.png``: flat colours with a little noise."""
    for split, n in (("train", n_train), ("valid", n_valid)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            r, g, b = COLOURS[name]
            for i in range(n):
                shade = (i * 7) % 30
                Image.new("RGB", (20, 20), (r - shade, g, b)).save(folder / f"{i}.png")
    return root


def learnkit_exe() -> str:
    """The installed ``learnkit`` console script (beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("learnkit")
    found = str(beside) if beside.exists() else shutil.which("learnkit")
    if found is None:
        pytest.skip("the learnkit console script is not installed")
    return found


def run_learnkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``learnkit`` as a user would, capturing stdout and stderr."""
    return subprocess.run(
        [learnkit_exe(), *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=_env()
    )


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return env | {"CI": "1", "COLUMNS": "120"}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Two colour classes, 12 train + 6 valid images each."""
    return make_image_folder(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, image_folder) -> dict:
    """One tiny fit through the installed command (simple_cnn, size 32, 1 epoch): its JSON and run folder."""
    run = tmp_path_factory.mktemp("run")
    proc = run_learnkit(
        "fit", str(image_folder), "--arch", "simple_cnn", "--epochs", "1", "--lr", "1e-2", "--size", "32",
        "--bs", "8", "--seed", "0", "--device", "cpu", "--path", str(run), "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return {"result": json.loads(proc.stdout), "path": run, "stderr": proc.stderr}
