"""The import layering of docs/internals.md ("Layering: what may import what"): no import cycles.

Every module of ``learnkit/``, ``cli/`` (installed as ``learnkit.cli``) and ``zoo/``
(``learnkit.zoo``) is parsed with ``ast`` and its imports sorted by when they run:

- ``module``: at import time (top level, class bodies, ``try``/``if`` blocks);
- ``deferred``: inside a function (a Learner method delegating to ``learnkit.tta``, ...);
- ``alias``: inside a module-level ``__getattr__`` (PEP 562): a name re-exported lazily from the
  module that now holds it, so that an old import path keeps working;
- imports under ``if TYPE_CHECKING:`` never run and are left out.

``from learnkit import NAME`` goes to the module ``learnkit/__init__.py``'s lazy table names.
The module-level graph must be acyclic, and so must the graph of every import that runs (module,
deferred and alias) but for the aliases listed in ``ALIASES``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# source folder -> installed package (pyproject's [tool.setuptools.package-dir])
PACKAGES = {"learnkit": "learnkit", "cli": "learnkit.cli", "zoo": "learnkit.zoo"}

# Lazy re-exports that close a cycle, each checked to be nothing but a module-level __getattr__:
# learnkit.vision hands on the factories of learnkit.vision.learners (fastai's
# ``from fastai.vision import cnn_learner``), without importing the Learner until asked.
ALIASES: set[tuple[str, str]] = set()


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` (node -> successors) as ``[a, b, ..., a]``, or None when it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


class _Imports(ast.NodeVisitor):
    """Collects ``(target, kind, line)`` for every import of one module."""

    def __init__(self, module: str, is_package: bool, known: set[str], exports: dict[str, str]):
        self.module, self.known, self.exports = module, known, exports
        self.package = module if is_package else module.rpartition(".")[0]
        self.kind, self.in_class = "module", False
        self.edges: list[tuple[str, str, int]] = []

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        outer, in_class = self.kind, self.in_class
        if outer == "module":
            top_getattr = getattr(node, "name", "") == "__getattr__" and not in_class
            self.kind = "alias" if top_getattr else "deferred"
        self.in_class = False
        self.generic_visit(node)
        self.kind, self.in_class = outer, in_class

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        in_class, self.in_class = self.in_class, True  # its body runs at import; its methods do not
        self.generic_visit(node)
        self.in_class = in_class

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:  # the else branch does run
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        self._add(prefix, node.lineno)
        for alias in node.names:
            name = f"{prefix}.{alias.name}"
            self._add(self.exports.get(name, name), node.lineno)

    def _add(self, name: str, line: int) -> None:
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if name and name != self.module:
            self.edges.append((name, self.kind, line))


def import_edges(
    source: str, module: str, is_package: bool, known: set[str], exports: dict[str, str] | None = None
) -> list[tuple[str, str, int]]:
    """``(target module, kind, line)`` for each import of ``source`` that names a module of ``known``."""
    visitor = _Imports(module, is_package, known, exports or {})
    visitor.visit(ast.parse(source))
    return visitor.edges


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for file in sorted((ROOT / folder).rglob("*.py")):
            parts = list(file.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = file
    return found


def _lazy_exports() -> dict[str, str]:
    """learnkit/__init__.py's ``_EXPORTS`` as ``learnkit.NAME`` -> the module that defines it."""
    for node in ast.parse((ROOT / "learnkit" / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_EXPORTS":
            return {f"learnkit.{name}": module for name, module in ast.literal_eval(node.value).items()}
    raise AssertionError("learnkit/__init__.py has no _EXPORTS table")


MODULES = _modules()
EDGES = {
    module: import_edges(file.read_text(), module, file.name == "__init__.py", set(MODULES), _lazy_exports())
    for module, file in MODULES.items()
}


def _graph(kinds: set[str], leave_out: set[tuple[str, str]] = frozenset()) -> dict[str, set[str]]:
    return {
        m: {t for t, kind, _ in edges if kind in kinds and (m, t) not in leave_out}
        for m, edges in EDGES.items()
    }


def _explain(cycle: list[str]) -> str:
    steps = []
    for src, dst in zip(cycle, cycle[1:]):
        kind, line = next((k, n) for t, k, n in EDGES[src] if t == dst)
        steps.append(f"  {src} (line {line}, {kind} import) -> {dst}")
    return "import cycle:\n" + "\n".join(steps)


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for t in graph.get(todo.pop(), set()) - seen:
            seen.add(t)
            todo.append(t)
    return seen


# --- the detector itself ---
def test_find_cycle_finds_a_cycle_and_nothing_else():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"b"}, "b": {"y"}}) == ["b", "y", "z", "b"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_import_edges_sort_imports_by_when_they_run():
    known = {"pkg", "pkg.low", "pkg.high", "pkg.sub", "pkg.sub.mod", "pkg.other", "pkg.typed", "pkg.later"}
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import json
        from .. import low
        from .mod import thing
        if TYPE_CHECKING:
            from pkg.typed import T
        else:
            from pkg.later import U

        class C:
            import pkg.other

        def f():
            from pkg.high import g

        def __getattr__(name):
            import pkg.high as high
            return getattr(high, name)

        from pkg import Public
        """
    )
    edges = import_edges(source, "pkg.sub.mine", False, known, {"pkg.Public": "pkg.high"})
    by_line = {(t, k) for t, k, _ in edges}
    assert by_line == {
        ("pkg", "module"),
        ("pkg.low", "module"),
        ("pkg.sub.mod", "module"),
        ("pkg.later", "module"),
        ("pkg.other", "module"),
        ("pkg.high", "deferred"),
        ("pkg.high", "alias"),
        ("pkg.high", "module"),  # `from pkg import Public`, Public living in pkg.high
    }  # pkg.typed: only under TYPE_CHECKING; json: not ours


def test_a_cycle_through_a_deferred_import_is_reported():
    known = {"p.a", "p.b"}
    graph = {"p.a": set(), "p.b": set()}
    for module, source in (("p.a", "import p.b\n"), ("p.b", "def f():\n    from p import a\n")):
        graph[module] = {t for t, _, _ in import_edges(source, module, False, known | {"p"})} - {"p"}
    assert find_cycle(graph) == ["p.a", "p.b", "p.a"]


# --- the package ---
def test_the_modules_are_found():
    assert {
        "learnkit.learner",
        "learnkit.vision.learners",
        "learnkit.cli.app",
        "learnkit.zoo.builtin",
    } <= set(MODULES)
    assert any(t == "learnkit.learner" for t, _, _ in EDGES["learnkit.vision.learners"])


def test_module_level_imports_have_no_cycle():
    cycle = find_cycle(_graph({"module"}))
    assert cycle is None, _explain(cycle)


def test_deferred_imports_add_no_cycle():
    """Deferred imports must not hide a cycle: with them the graph is still acyclic, but for the
    lazy aliases of ``ALIASES``."""
    cycle = find_cycle(_graph({"module", "deferred", "alias"}, ALIASES))
    assert cycle is None, _explain(cycle)


def test_the_allowed_aliases_are_aliases_and_still_needed():
    graph = _graph({"module", "deferred", "alias"})
    for src, dst in sorted(ALIASES):
        kinds = {k for t, k, _ in EDGES[src] if t == dst}
        assert kinds == {"alias"}, f"{src} -> {dst} is a {kinds} import, not only a lazy alias"
        assert src in _reach(graph, dst), f"{src} -> {dst} closes no cycle: take it out of ALIASES"


def test_only_learnkit_vision_learners_imports_the_learner():
    runtime = {"module", "deferred", "alias"}
    importers = {m for m, edges in EDGES.items() if any(t == "learnkit.learner" for t, _, _ in edges)}
    assert {m for m in importers if m.startswith("learnkit.vision")} == {"learnkit.vision.learners"}
    # what the Learner itself uses (delegates included) never imports it back
    below = _reach(_graph(runtime, ALIASES), "learnkit.learner")
    assert not importers & below, sorted(importers & below)


def test_model_and_prediction_modules_import_no_learner():
    """At run time: importing the vision model builders, the checkpoint modules and the Learner's
    delegates (predict, TTA, show, interpret, save/load) imports no ``learnkit.learner``; the
    package-level names of the factories give the one function."""
    code = textwrap.dedent(
        """
        import sys
        import learnkit.vision, learnkit.vision.models, learnkit.vision.cnn, learnkit.vision.unet_learner
        import learnkit.inference, learnkit.tta, learnkit.show, learnkit.interpret, learnkit.persist
        import learnkit.checkpoint, learnkit.registry, learnkit.weights, learnkit.losses
        assert "learnkit.learner" not in sys.modules, "a lower module imported the Learner"
        from learnkit.vision import cnn_learner as vision_cnn_learner
        import learnkit, learnkit.vision.learners as home
        assert home.create_cnn is vision_cnn_learner is learnkit.cnn_learner is home.cnn_learner
        assert learnkit.unet_learner is home.unet_learner
        assert learnkit.load_learner is home.load_learner
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
