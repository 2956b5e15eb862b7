"""The Learner's own progress output, as fastai v1's (fastprogress) wherever the code runs: piped or
in a file the table lines on stdout, on a terminal a live bar too, in a notebook an HTML table."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import types
from pathlib import Path

from learnkit import Learner
from learnkit.callbacks import epoch_table
from learnkit.callbacks.epoch_table import TerminalTable, TextTable
from learnkit.metrics import error_rate
from tests.core.tiny import tiny_data, tiny_model

ROOT = Path(__file__).resolve().parents[2]
HEADER = re.compile(r"^epoch +train_loss +valid_loss +error_rate +time$")
ROW = re.compile(r"^[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9]{2}:[0-9]{2}$")


def test_text_table_lines_are_fastprogress_console_lines():
    out = io.StringIO()
    table = TextTable(out)
    names = ["epoch", "train_loss", "valid_loss", "error_rate", "lr", "mom", "time"]
    table.fit_start(1, names)
    row = {"epoch": 0, "train_loss": 0.912345, "valid_loss": 0.812345, "error_rate": 0.25, "time": 3.4}
    table.epoch_end(row | {"lr": 1e-3, "mom": 0.9})
    table.epoch_end(row | {"epoch": 1, "valid_loss": None, "time": 61})
    assert out.getvalue().splitlines() == [
        "epoch     train_loss  valid_loss  error_rate  time",  # names padded to 8, two spaces apart
        "0         0.912345    0.812345    0.250000    00:03",
        "1         0.912345    #na#        0.250000    01:01",
    ]


def _script(tmp_path, body):
    script = tmp_path / "fit.py"
    script.write_text(
        "from tests.core.tiny import tiny_data, tiny_model\n"
        "from learnkit import Learner\n"
        "from learnkit.metrics import error_rate\n" + body
    )
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_piped_fits_print_the_table_on_stdout(tmp_path):
    out = _script(
        tmp_path,
        "learn = Learner(tiny_data(), tiny_model(), metrics=error_rate)\n"
        "learn.fit(2, 1e-2)\nlearn.fit_one_cycle(1, 1e-2)\nprint('--')\n"
        "Learner(tiny_data(), tiny_model(), metrics=error_rate, quiet=True).fit(1, 1e-2)\n"
        "Learner(tiny_data(), tiny_model(), metrics=error_rate, silent=True).fit(1, 1e-2)\n",
    )
    lines = out.splitlines()
    assert lines[-1] == "--"  # quiet and silent: nothing
    lines = lines[:-1]
    assert [bool(HEADER.match(line)) for line in lines] == [True, False, False, True, False]
    assert [ln.split()[0] for ln in lines if ROW.match(ln)] == ["0", "1", "0"]  # from 0 each fit
    assert "\r" not in out and "\x1b" not in out


def test_terminal_table_draws_a_bar_and_clears_it(monkeypatch):
    monkeypatch.setattr(epoch_table, "REDRAW_S", 0.0)
    out = io.StringIO()
    table = TerminalTable(out)
    table.fit_start(1, ["epoch", "train_loss", "time"])
    table.epoch_start(0, 4)
    table.batch_end(1, loss=0.5)
    row = {"epoch": 0, "train_loss": 0.5, "time": 1.0}
    table.epoch_end(row)
    text = out.getvalue()
    assert "\r |" in text and "50.00% [2/4 " in text and "0.5000]" in text
    assert text.endswith("\r\x1b[2K" + table.line(row) + "\n")


def test_a_notebook_gets_an_updating_html_table(monkeypatch):
    shown = []

    class Handle:
        def __init__(self, obj):
            shown.append(["display", obj.data])

        def update(self, obj):
            shown.append(["update", obj.data])

    class HTML:
        def __init__(self, data):
            self.data = data

    class ZMQInteractiveShell:
        pass

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = ZMQInteractiveShell
    display = types.ModuleType("IPython.display")
    display.HTML, display.display = HTML, lambda obj, display_id=False: Handle(obj)
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    Learner(tiny_data(), tiny_model(), metrics=error_rate).fit(2, 1e-2)
    assert sys.stdout.getvalue() == ""  # nothing as text in a notebook
    tables = [data for _, data in shown if data.startswith("<table")]
    assert "<th" in tables[0] and ">error_rate</th>" in tables[0]
    assert tables[-1].count("<tr>") == 3  # the header and two epochs, updated in place
    assert re.search(r"<td>1</td><td>[0-9.]+</td>", tables[-1])
