"""Results render as JSON, as aligned plain text when piped, and as a table on a terminal."""

import json
import math
from io import StringIO
from pathlib import Path

from rich.console import Console

from learnkit.cli.render import format_value, jsonable, render_result, render_rows


def _console(terminal: bool = False, width: int = 80) -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, width=width, force_terminal=terminal, color_system=None), out


def test_result_as_json_is_one_object():
    console, out = _console()
    result = {"accuracy": 0.75, "history": [{"epoch": 0}], "checkpoint": Path("run/models/last.safetensors")}
    render_result(result, console, as_json=True)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {**result, "checkpoint": "run/models/last.safetensors"}


def test_result_piped_is_aligned_plain_text():
    console, out = _console()
    render_result({"valid_loss": 0.5, "accuracy": 0.875, "history": [1]}, console, skip=("history",))
    assert out.getvalue() == "valid_loss  0.500000\naccuracy    0.875000\n"


def test_result_on_a_terminal_is_a_table():
    console, out = _console(terminal=True)
    render_result({"accuracy": 0.875}, console, title="validate")
    text = out.getvalue()
    assert "validate" in text and "accuracy" in text and "0.875000" in text


def test_rows_as_json_lines():
    console, out = _console()
    render_rows([{"name": "a", "n": 1}, {"name": "b", "n": 2}], console, as_json=True)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"name": "a", "n": 1},
        {"name": "b", "n": 2},
    ]


def test_rows_piped_have_a_header_and_aligned_columns():
    console, out = _console()
    render_rows([{"name": "resnet18", "params": 11}, {"name": "simple_cnn", "params": 2}], console)
    assert out.getvalue().splitlines() == ["name        params", "resnet18    11", "simple_cnn  2"]


def test_rows_on_a_narrow_terminal_keep_their_cells():
    console, out = _console(terminal=True, width=40)
    render_rows([{"name": "mobilenet_v3_small", "params": 1}], console)
    assert "mobilenet_v3_small" in out.getvalue()


def test_no_color_means_no_escape_codes(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    out = StringIO()
    console = Console(file=out, force_terminal=True, width=60)
    render_result({"accuracy": 0.5}, console)
    assert "\x1b[3" not in out.getvalue()  # no foreground colour codes


def test_format_value():
    assert format_value(0.123456789) == "0.123457"
    assert format_value(1e-5) == "1e-05"
    assert format_value(0.0) == "0.000000"
    assert format_value(None) == "-"
    assert format_value(3) == "3"
    assert format_value(["a", "b"]) == "a, b"


def test_jsonable_replaces_non_finite_floats_and_slices():
    assert jsonable({"a": math.nan, "b": (1, slice(None, 1e-3))}) == {"a": None, "b": [1, [None, 1e-3]]}
