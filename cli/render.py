"""Results on stdout: a rich table on a terminal, aligned plain text when piped, or JSON.

Every function takes the :class:`rich.console.Console` to write to, so tests render into
``Console(file=StringIO(), width=...)``. Colour follows rich, which honours ``NO_COLOR``.
"""

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .controls import escape_controls  # noqa: F401 - re-exported


class CliConsole(Console):
    """A rich console whose closed pipe (``learnkit predict ... | head -1``) raises
    :class:`BrokenPipeError` for the command's edge to end quietly, not rich's ``SystemExit(1)``."""

    def on_broken_pipe(self) -> None:
        """Stop writing and let the error reach :func:`cli.group.pipe_closed`."""
        self.quiet = True
        raise BrokenPipeError("output closed")


def make_console(*, stderr: bool = False) -> Console:
    """A console on stdout (results) or stderr (progress and logs), resolved at print time."""
    return CliConsole(stderr=stderr, highlight=False, soft_wrap=False)


def jsonable(value: Any) -> Any:
    """``value`` with paths as strings, tuples as lists and non-finite floats as ``null``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, slice):
        return [value.start, value.stop]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        return jsonable(value.item())
    return str(value)


def format_value(value: Any) -> str:
    """A short human form: 6 decimals for ordinary floats, ``-`` for missing values."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.6f}" if value == 0 or 1e-3 <= abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(jsonable(value))
    return escape_controls(str(value))


def print_json(value: Any, console: Console) -> None:
    """``value`` as one line of JSON (no wrapping, no markup)."""
    console.out(json.dumps(jsonable(value)), highlight=False)


def print_json_lines(items: Iterable[Mapping[str, Any]], console: Console) -> None:
    """One line of JSON per item (JSON Lines)."""
    for item in items:
        print_json(item, console)


def aligned(rows: Sequence[Sequence[str]], *, gap: int = 2) -> list[str]:
    """Rows of cells as text lines with every column padded to its widest cell."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append((" " * gap).join(cells).rstrip())
    return lines


def render_result(
    result: Mapping[str, Any],
    console: Console,
    *,
    as_json: bool = False,
    title: str | None = None,
    skip: Iterable[str] = (),
) -> None:
    """One result: a JSON object, or its scalar fields as ``name  value`` (a table on a terminal).

    ``skip`` names fields left out of the human form (e.g. the history already shown); JSON always
    carries every field.
    """
    if as_json:
        print_json(result, console)
        return
    hidden = set(skip)
    pairs = [(str(k), format_value(v)) for k, v in result.items() if k not in hidden]
    if console.is_terminal:
        table = Table(title=title, box=box.SIMPLE, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, text in pairs:
            table.add_row(key, Text(text))  # a value is never markup: a path may hold [brackets]
        console.print(table)
        return
    for line in aligned(pairs):
        console.out(line, highlight=False)


def render_rows(
    rows: Sequence[Mapping[str, Any]],
    console: Console,
    *,
    as_json: bool = False,
    columns: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Many items: JSON Lines, a rich table on a terminal, or aligned columns with a header."""
    if as_json:
        print_json_lines(rows, console)
        return
    names = list(columns) if columns is not None else _columns(rows)
    cells = [[format_value(row.get(name)) for name in names] for row in rows]
    if console.is_terminal:
        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for name in names:
            table.add_column(name, no_wrap=True)
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))
        console.print(table)
        return
    for line in aligned([names, *cells]):
        console.out(line, highlight=False)


def _columns(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``rows``, in the order first seen."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def print_note(result: dict, key: str = "split") -> None:
    """Take ``result[key]`` out (when there) and print it on stderr as ``note: ...``."""
    import sys

    note = result.pop(key, None)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
