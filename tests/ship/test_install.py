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


@pytest.mark.slow
def test_pip_install_keeps_the_installed_torch(tmp_path):
    """pip's resolver, offline, on this venv (which holds the tested torch): it installs learnkit
    and nothing else, so torch is kept; a dependency it would have to replace fails the run."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-index",
         "--no-build-isolation", "--report", str(report), "-e", f"{ROOT}[test]"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert names == {"learnkit"}, f"pip would also install {sorted(names - {'learnkit'})}"
