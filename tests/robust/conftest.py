"""Fixtures of the robustness and scale tests: a tiny learnable image folder and the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = {"reds": (200, 40, 40), "blues": (40, 60, 210)}


def make_folder(root: Path, n_train: int = 24, n_valid: int = 8, size: int = 16) -> Path:
    """``root/{train,valid}/<class>/*.png``: noisy tinted squares, two classes (learnable)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", n_valid)):
        for name, colour in CLASSES.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                noise = rng.normal(0, 40, (size, size, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def learnkit_exe() -> str:
    """The installed console script (beside this interpreter, else on PATH)."""
    beside = Path(sys.executable).with_name("learnkit")
    found = str(beside) if beside.exists() else shutil.which("learnkit")
    if found is None:
        pytest.skip("the learnkit console script is not installed")
    return found


def cli_env() -> dict[str, str]:
    """A CI-like environment: plain progress lines, no colour codes."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return env | {"CI": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``learnkit ARGS`` as a user runs it, output captured."""
    return subprocess.run(
        [learnkit_exe(), *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=cli_env()
    )


def one_error_line(stderr: str) -> str:
    """The single ``error:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """Two classes, 24 train + 8 valid images each, 16 x 16 pixels."""
    return make_folder(tmp_path_factory.mktemp("tiny"))
