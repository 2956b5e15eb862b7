"""The progress a Learner shows by itself, as fastai v1 (fastprogress) shows it, wherever the code runs.

``learn.fit(3)`` prints the per-epoch table on stdout::

    epoch     train_loss  valid_loss  error_rate  time
    0         0.912345    0.812345    0.250000    00:03

- in a notebook (a Jupyter kernel with IPython): an HTML table and a bar, updated in place;
- on a terminal: a live bar (``\\r``-redrawn) under the table, cleared before each row;
- piped or into a file (or ``CI`` true): the table lines only, one per epoch, as fastprogress's
  console output, so a CI log or ``python train.py > log`` keeps them.

Nothing prints when the learner is ``quiet`` (``silent``), or when the fit already has a callback
that reports progress (the command line's :class:`~learnkit.callbacks.progress.ProgressCallback`,
on stderr), so a table never prints twice. The columns are v1's: epoch, train_loss, valid_loss,
each metric, time (``mm:ss``); the epoch counts from 0 in each fit.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from learnkit.callback import Callback
from learnkit.callbacks.progress import ProgressCallback
from learnkit.interactive import in_notebook, is_interactive

if TYPE_CHECKING:
    from learnkit.learner import Learner

HIDDEN = ("lr", "mom")  # the Recorder's history columns that fastai's table does not show
BAR_WIDTH = 40
REDRAW_S = 0.1  # the terminal bar is redrawn at most this often


def format_time(seconds: float) -> str:
    """fastprogress's ``format_time``: ``mm:ss``, ``h:mm:ss`` past an hour."""
    t = int(seconds)
    h, m, s = t // 3600, (t // 60) % 60, t % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_cell(name: str, value: Any) -> str:
    """A cell as fastai v1 writes it: ``time`` as ``mm:ss``, floats with 6 decimals, ``#na#`` for
    a missing value (an epoch without validation), integers as they are."""
    if name == "time" and isinstance(value, int | float):
        return format_time(value)
    if value is None:
        return "#na#"
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def table_columns(names: Sequence[str]) -> list[str]:
    """The Recorder's history columns that the table shows (fastai's: no lr, no momentum)."""
    return [n for n in names if n not in HIDDEN]


class TextTable:
    """A progress reporter that prints the per-epoch table as fastprogress's console output does:
    each header name padded to 8 characters, columns two spaces apart, on ``file`` (stdout)."""

    def __init__(self, file: TextIO | None = None):
        self.file = file
        self.columns: list[str] = []
        self.names: list[str] = []

    @property
    def out(self) -> TextIO:
        return self.file or sys.stdout

    def _write(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def fit_start(self, n_epochs: int, names: Sequence[str] = ()) -> None:
        self.columns = table_columns(names)
        self.names = [name.ljust(8) for name in self.columns]
        self._write("  ".join(self.names).rstrip())

    def epoch_start(self, epoch: int, n_batches: int | None) -> None:
        pass

    def batch_end(self, i: int, loss: float | None = None, lr: float | None = None) -> None:
        pass

    def line(self, row: Mapping[str, Any]) -> str:
        """One epoch's row: each cell followed by the spaces that align it under its name."""
        if not self.columns:
            self.fit_start(0, list(row))
        cells = [format_cell(name, row.get(name)) for name in self.columns]
        return "".join(c + " " * max(1, 2 + len(n) - len(c)) for c, n in zip(cells, self.names)).rstrip()

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        self._write(self.line(row))

    def fit_end(self) -> None:
        pass


class TerminalTable(TextTable):
    """The table, plus a live bar of the epoch's batches redrawn on the same line (a terminal)."""

    def __init__(self, file: TextIO | None = None):
        super().__init__(file)
        self._n_batches: int | None = None
        self._epoch, self._n_epochs = 0, 0
        self._start = self._drawn = 0.0
        self._loss: float | None = None
        self._bar_shown = False

    def fit_start(self, n_epochs: int, names: Sequence[str] = ()) -> None:
        self._n_epochs = n_epochs
        super().fit_start(n_epochs, names)

    def epoch_start(self, epoch: int, n_batches: int | None) -> None:
        self._epoch, self._n_batches, self._loss = epoch, n_batches, None
        self._start = time.perf_counter()

    def batch_end(self, i: int, loss: float | None = None, lr: float | None = None) -> None:
        if loss is not None:
            self._loss = loss
        now = time.perf_counter()
        if now - self._drawn < REDRAW_S:
            return
        self._drawn = now
        self.out.write("\r" + bar_text(i + 1, self._n_batches, now - self._start, self._loss))
        self.out.flush()
        self._bar_shown = True

    def _clear(self) -> None:
        if self._bar_shown:
            self.out.write("\r\x1b[2K")
            self._bar_shown = False

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        self._clear()
        super().epoch_end(row)

    def fit_end(self) -> None:
        self._clear()
        self.out.flush()


def bar_text(done: int, total: int | None, elapsed: float, loss: float | None = None) -> str:
    """fastprogress's console bar: `` |████------| 40.00% [4/10 00:02<00:03 0.5123]``."""
    total = total or done or 1
    frac = min(1.0, done / total)
    filled = int(BAR_WIDTH * frac)
    left = elapsed / done * (total - done) if done else 0.0
    extra = f" {loss:.4f}" if loss is not None else ""
    bar = "█" * filled + "-" * (BAR_WIDTH - filled)
    return f" |{bar}| {100 * frac:.2f}% [{done}/{total} {format_time(elapsed)}<{format_time(left)}{extra}]"


class NotebookTable(TextTable):
    """In a Jupyter kernel: an HTML table and a bar under it, updated in place (fastprogress's look)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._table: Any = None
        self._bar: Any = None
        self._n_batches: int | None = None
        self._start = self._drawn = 0.0

    def fit_start(self, n_epochs: int, names: Sequence[str] = ()) -> None:
        from IPython.display import HTML, display

        self.columns, self.rows = table_columns(names), []
        self._n_epochs = n_epochs
        self._table = display(HTML(self.html()), display_id=True)
        self._bar = display(HTML(""), display_id=True)

    def html(self) -> str:
        """The table so far as HTML (fastprogress's ``dataframe`` table)."""
        head = "".join(f'<th style="text-align: left;">{c}</th>' for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in self.rows)
        table = f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        return f'<table border="1" class="dataframe">{table}</table>'

    def epoch_start(self, epoch: int, n_batches: int | None) -> None:
        self._n_batches, self._start = n_batches, time.perf_counter()

    def batch_end(self, i: int, loss: float | None = None, lr: float | None = None) -> None:
        now = time.perf_counter()
        if self._bar is None or now - self._drawn < 0.2:
            return
        from IPython.display import HTML

        self._drawn = now
        total = self._n_batches or i + 1
        text = bar_text(i + 1, total, now - self._start, loss).split("| ", 1)[-1]
        html = f'<progress value="{i + 1}" max="{total}" style="width:300px; height:20px;"></progress> {text}'
        self._bar.update(HTML(html))

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        from IPython.display import HTML

        self.rows.append([format_cell(name, row.get(name)) for name in self.columns])
        if self._table is not None:
            self._table.update(HTML(self.html()))

    def fit_end(self) -> None:
        if self._bar is not None:
            from IPython.display import HTML

            self._bar.update(HTML(""))


def table_reporter(stream: TextIO | None = None) -> TextTable:
    """The reporter that suits where ``stream`` (stdout) goes: notebook, terminal, or plain lines."""
    if in_notebook():
        try:
            import IPython.display  # noqa: F401
        except ImportError:
            return TextTable(stream)
        return NotebookTable()
    if is_interactive(stream or sys.stdout):
        return TerminalTable(stream)
    return TextTable(stream)


def default_progress(learn: Learner, callbacks: Sequence[Callback]) -> list[Callback]:
    """The progress a fit adds by itself (see the module docstring): none when the learner is
    ``quiet``/``silent`` or a callback already reports progress."""
    if getattr(learn, "quiet", False) or getattr(learn, "silent", False):
        return []
    if any(getattr(cb, "reports_progress", False) for cb in callbacks):
        return []
    progress = ProgressCallback(table_reporter())
    progress.order = -9  # right after the Recorder (-10), as v1's Recorder prints the row: before
    # the callbacks that print a line of their own (SaveModelCallback's "Better model found ...")
    return [progress]
