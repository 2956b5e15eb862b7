"""The per-epoch table a Learner prints by itself when someone is watching, as fastai does.

``learn.fit(3)`` in a terminal or a notebook prints::

    epoch  train_loss  valid_loss  accuracy  time
    0      0.912345    0.801234    0.700000  00:01.2
    ...

Nothing prints when the learner is ``quiet``, when the output is not a terminal (a log file, a
pipe, ``CI=true``), or when the fit already has a callback that reports progress (the command
line's :class:`~learnkit.callbacks.progress.ProgressCallback`), so a table never prints twice.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from learnkit.callback import Callback
from learnkit.callbacks.progress import ProgressCallback
from learnkit.interactive import is_interactive

if TYPE_CHECKING:
    from learnkit.learner import Learner

_MIN_WIDTH = 10


def format_cell(name: str, value: Any) -> str:
    """A cell: ``time`` as ``mm:ss`` (``00:ss.s`` under a minute), floats with 6 decimals."""
    if name == "time" and isinstance(value, int | float):
        if value < 59.95:
            return f"00:{value:04.1f}"
        minutes, secs = divmod(int(round(value)), 60)
        return f"{minutes:02d}:{secs:02d}"
    if isinstance(value, float):
        return f"{value:.6f}"
    return "-" if value is None else str(value)


class TextTable:
    """A progress reporter that prints fastai's per-epoch table as plain text on ``file``."""

    def __init__(self, file: TextIO | None = None):
        self.file = file
        self.columns: list[str] = []

    def _print(self, cells: Sequence[str]) -> None:
        widths = [max(len(name), _MIN_WIDTH) for name in self.columns]
        line = "  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip()
        print(line, file=self.file or sys.stdout, flush=True)

    def fit_start(self, n_epochs: int, names: Sequence[str] = ()) -> None:
        self.columns = list(names)
        self._print(self.columns)

    def epoch_start(self, epoch: int, n_batches: int | None) -> None:
        pass

    def batch_end(self, i: int, loss: float | None = None, lr: float | None = None) -> None:
        pass

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        if not self.columns:
            self.fit_start(0, list(row))
        self._print([format_cell(name, row.get(name)) for name in self.columns])

    def fit_end(self) -> None:
        pass


def default_progress(learn: Learner, callbacks: Sequence[Callback]) -> list[Callback]:
    """The progress a fit adds by itself: the text table when the learner is not ``quiet``, stdout
    is watched (:func:`learnkit.interactive.is_interactive`) and no callback already reports."""
    if getattr(learn, "quiet", False) or any(getattr(cb, "reports_progress", False) for cb in callbacks):
        return []
    if not is_interactive(sys.stdout):
        return []
    return [ProgressCallback(TextTable())]
