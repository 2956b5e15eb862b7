"""Zoo test helpers: a registry reset around a test, and throwaway plugin distributions."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from learnkit import registry


@pytest.fixture
def fresh_registry():
    """An empty registry that reloads its plugins on the next lookup, and again after the test."""
    registry._reset()
    yield registry
    registry._reset()


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """``make_plugin(dist, module, source)``: an installed-looking plugin on a temporary sys.path entry.

    It writes ``<module>.py`` and ``<dist>-0.1.dist-info`` whose ``entry_points.txt`` names the module
    in the ``learnkit.zoo`` group under the entry-point name ``dist``, as ``pip install`` would.
    """
    monkeypatch.syspath_prepend(str(tmp_path))
    made: list[str] = []

    def make(dist: str, module: str, source: str) -> Path:
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
        info = tmp_path / f"{dist}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[learnkit.zoo]\n{dist} = {module}\n")
        made.append(module)
        return tmp_path

    yield make
    for module in made:
        sys.modules.pop(module, None)
