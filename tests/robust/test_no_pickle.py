"""No unpickling anywhere in the package: checkpoints are read only through safetensors, and the one
``torch.load`` (a user's ``--pretrained`` .pt/.pth state dict) insists on ``weights_only=True``.

The same scan as the project's acceptance check: imports of pickle-like modules, ``pickle.load(s)``,
and ``torch.load`` without ``weights_only=True``, over ``learnkit/``, ``cli/`` and ``zoo/``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _weights_only(call: ast.Call) -> bool:
    return any(
        k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
        for k in call.keywords
    )


def findings(root: Path) -> Iterator[str]:
    """``path:line: what`` for every place that could unpickle a file."""
    for part in ("learnkit", "cli", "zoo"):
        for path in sorted((root / part).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = [node.module or ""]
                if any(n.split(".")[0] in UNSAFE_MODULES for n in names):
                    yield f"{path}:{node.lineno}: imports {names[0]}"
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    fn = node.func.attr
                    owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
                    if fn in ("load", "loads") and owner in UNSAFE_MODULES:
                        yield f"{path}:{node.lineno}: {ast.unparse(node)[:70]}"
                    if fn == "load" and owner == "torch" and not _weights_only(node):
                        yield f"{path}:{node.lineno}: {ast.unparse(node)[:70]}"


def test_nothing_in_the_package_unpickles():
    assert (ROOT / "learnkit").is_dir()
    assert list(findings(ROOT)) == []


def test_the_scan_finds_what_it_looks_for(tmp_path):
    (tmp_path / "learnkit").mkdir()
    (tmp_path / "cli").mkdir()
    (tmp_path / "zoo").mkdir()
    (tmp_path / "learnkit" / "bad.py").write_text(
        "import pickle\nimport torch\nx = torch.load('a.pt')\ny = torch.load('b', weights_only=True)\n"
    )
    assert [f.split(": ", 1)[1] for f in findings(tmp_path)] == ["imports pickle", "torch.load('a.pt')"]
