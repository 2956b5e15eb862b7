"""Installing learnkit keeps the user's torch: ranges in pyproject, exact pins only in constraints.txt."""

import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _deps() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(d) for d in project["dependencies"]]
    return {r.name: r for r in reqs}


def test_torch_and_torchvision_are_ranges_that_hold_the_tested_builds():
    deps = _deps()
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    for name in ("torch", "torchvision"):
        spec = deps[name].specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned exactly in pyproject"
        assert any(s.operator == "<" for s in spec), f"{name} has no upper bound"
        assert spec.contains(pins[name]), f"constraints.txt's {name} {pins[name]} is outside {spec}"
        assert spec.contains(version(name).split("+")[0]), f"the installed {name} is outside {spec}"


def test_make_and_ci_install_with_the_constraints_file():
    assert re.search(r"pip install .*-c constraints\.txt", (ROOT / "Makefile").read_text())
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _declared_requirements() -> list[str]:
    """learnkit's dependencies and every extra's, as pip would resolve ``learnkit[test]`` (the
    extras that name learnkit itself expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if Requirement(r).name != "learnkit"]
    return reqs


@pytest.mark.slow
def test_pip_resolver_keeps_the_installed_torch(tmp_path):
    """pip's resolver, offline, over learnkit's declared requirements in this venv (which holds the
    tested torch): everything is already satisfied, so nothing is installed and torch stays. An
    exact pin on another torch would make pip want a download, and fail here with --no-index."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
         "--report", str(report), *_declared_requirements()],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    install = json.loads(report.read_text())["install"]
    assert install == [], f"pip would install {[i['metadata']['name'] for i in install]}"


def test_an_exact_pin_on_another_torch_would_replace_it(tmp_path):
    """The check above can fail: a requirement the installed torch does not meet is refused offline."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index", "torch==2.0.0"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
