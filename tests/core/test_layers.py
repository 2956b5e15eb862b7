"""The layer order of docs/internals.md ("Layering: what may import what") is data, checked here:
no module imports a module of a higher layer, every module has a layer, and nothing below the
command line imports typer, click or rich or reads sys.argv."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

from tests.core.test_layering import EDGES, MODULES, ROOT

FREE = {"learnkit"}  # the lazy top-level table (PEP 562): it re-exports, it belongs to no layer
CLI_ONLY = ("typer", "click", "rich")


def read_layers(doc: str) -> list[tuple[str, list[str]]]:
    """``[(layer, [pattern, ...]), ...]`` top to bottom, from the ```layers block of ``doc``."""
    block = re.search(r"```layers\n(.*?)```", doc, re.S)
    assert block, "docs/internals.md has no ```layers block"
    layers = []
    for line in block.group(1).splitlines():
        name, _, patterns = line.partition(":")
        layers.append((name.strip(), patterns.split()))
    return layers


def rank(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """The index of ``module``'s layer (0 is the top), or None when no pattern matches it."""
    for i, (_, patterns) in enumerate(layers):
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return i
    return None


def violations(
    edges: dict[str, list[tuple[str, str, int]]], layers: list[tuple[str, list[str]]]
) -> list[str]:
    """Every import of a higher layer's module, and every module without a layer, as text."""
    found = []
    for module, targets in sorted(edges.items()):
        if module in FREE:
            continue
        mine = rank(module, layers)
        if mine is None:
            found.append(f"{module}: no layer in docs/internals.md")
            continue
        for target, kind, line in targets:
            theirs = rank(target, layers)
            if kind != "alias" and target not in FREE and theirs is not None and theirs < mine:
                found.append(
                    f"{module} (line {line}, {kind}, layer {layers[mine][0]}) imports "
                    f"{target} (layer {layers[theirs][0]})"
                )
    return found


LAYERS = read_layers((ROOT / "docs" / "internals.md").read_text())


def test_no_module_imports_a_higher_layer():
    assert violations(EDGES, LAYERS) == []


def test_the_check_fails_on_a_synthetic_tree_that_breaks_the_order():
    layers = [("top", ["pkg.cli", "pkg.cli.*"]), ("mid", ["pkg.jobs.*"]), ("low", ["pkg.cpu_load"])]
    edges = {
        "pkg.cli.app": [("pkg.jobs.train", "module", 1)],  # down: fine
        "pkg.cpu_load": [("pkg.jobs.config", "deferred", 7)],  # up: the example
        "pkg.jobs.train": [("pkg.cpu_load", "module", 2)],
        "pkg.stray": [],  # no layer
    }
    found = violations(edges, layers)
    assert found == [
        "pkg.cpu_load (line 7, deferred, layer low) imports pkg.jobs.config (layer mid)",
        "pkg.stray: no layer in docs/internals.md",
    ]


def _library_files() -> list[tuple[str, Path]]:
    cli = rank("learnkit.cli", LAYERS)
    return [(m, f) for m, f in MODULES.items() if m not in FREE and rank(m, LAYERS) != cli]


@pytest.mark.parametrize(("module", "file"), _library_files(), ids=lambda x: str(x))
def test_nothing_below_the_command_line_imports_it_or_reads_argv(module, file):
    tree = ast.parse(file.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] not in CLI_ONLY, f"{module} line {node.lineno} imports {name}"
        if isinstance(node, ast.Attribute) and node.attr == "argv":
            assert ast.unparse(node.value) != "sys", f"{module} line {node.lineno} reads sys.argv"
