"""YAML read within budgets: a config file is data from anywhere.

:func:`read_yaml_file` reads at most :data:`MAX_CONFIG_BYTES` (``/dev/zero`` or a huge file is
refused after that many bytes, not read whole) and parses with PyYAML's safe loader, but checks
the document's node graph before building any Python value from it: aliases (``*name``) may
expand it to at most :data:`MAX_NODES` nodes (the "billion laughs" of nested aliases is refused
before a single list is built) and nesting is at most :data:`MAX_DEPTH` deep; a recursive alias is
refused. Each refusal is one :class:`~learnkit.errors.UsageError` line (exit 2).

Example:
    >>> load_yaml("a: &x [1, 2]\\nb: *x\\n", "inline")
    {'a': [1, 2], 'b': [1, 2]}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnkit.errors import UsageError

MAX_CONFIG_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64


def read_yaml_file(file: str | Path, what: str = "--config") -> Any:
    """The YAML document in ``file`` (None when empty), within the budgets of the module doc."""
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{what}: cannot read {file}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UsageError(f"{what}: {file} is larger than the {MAX_CONFIG_BYTES} bytes a config may hold")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{what}: {file} is not UTF-8 text") from None
    return load_yaml(text, file, what)


def load_yaml(text: str, file: str | Path, what: str = "--config") -> Any:
    """``yaml.safe_load(text)``, with the node graph checked first (see the module doc)."""
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as exc:
            raise UsageError(f"{what}: {file} is not YAML ({str(exc).splitlines()[0]})") from None
        if node is None:
            return None
        problem = _expansion_problem(node)
        if problem is not None:
            raise UsageError(f"{what}: {file} refused: {problem}")
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise UsageError(f"{what}: {file} is not YAML ({str(exc).splitlines()[0]})") from None
    finally:
        loader.dispose()


def _expansion_problem(root: Any) -> str | None:
    """Why the node graph under ``root`` is too big once its aliases are expanded, or None.

    Each distinct node's expanded size is computed once (memoised), so a graph of a few hundred
    nodes that expands to 10^9 is measured in a few hundred steps.
    """
    import yaml

    sizes: dict[int, int] = {}
    heights: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node, yaml)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            heights[key] = 1 + max((heights[id(c)] for c in children), default=0)
            if sizes[key] > MAX_NODES:
                return f"its aliases expand it to more than {MAX_NODES} values"
            if heights[key] > MAX_DEPTH:
                return f"nested more than {MAX_DEPTH} deep"
            continue
        if key in sizes:
            continue
        if key in on_path:
            return "a recursive alias (a value holding itself)"
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node, yaml))
    return None


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
