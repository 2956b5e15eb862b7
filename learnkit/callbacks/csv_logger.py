"""Write each epoch's history row to a CSV file as the fit goes: ``<learn.path>/history.csv``.

One row per epoch (the Recorder's ``names``: epoch, train_loss, valid_loss, each metric, lr,
mom, time), written and flushed to disk
at the epoch's end, so the file is current even if the process is killed. With ``append=True`` (a
resumed run) the rows go after the existing ones and the header is not repeated; rows of epochs the
run is about to do again (written after the checkpoint it resumes from) are dropped first, so the
file never holds an epoch twice. Only rank 0 writes in a multi-process run.

Example:
    >>> learn.fit(3, 1e-3, callbacks=[CSVLogger(learn)])  # writes ./history.csv
    >>> open("history.csv").readline()
    'epoch,train_loss,valid_loss,accuracy,lr,mom,time\\n'
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.callback import LearnerCallback, RunState
from learnkit.distributed import is_main

if TYPE_CHECKING:
    from learnkit.learner import Learner


class CSVLogger(LearnerCallback):
    """Logs the Recorder's per-epoch rows to ``<learn.path>/<filename>.csv``.

    Args:
        learn: the Learner.
        filename: the file's name without ``.csv``, under ``learn.path``.
        append: keep the rows already in the file (a resumed run); else start a new file.
    """

    order = 20  # after the Recorder has written the epoch's row

    def __init__(self, learn: Learner, filename: str = "history", append: bool = False):
        super().__init__(learn)
        self.filename, self.append = filename, append
        self.columns: list[str] = []

    @property
    def path(self) -> Path:
        return Path(self.learn.path) / f"{self.filename}.csv"

    def on_train_begin(self, state: RunState) -> None:
        self.columns = list(self.learn.recorder.names)  # the Recorder's row, column for column
        if not is_main():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = self._kept_rows(state.start_epoch) if self.append else None
        if rows is None:
            _write_atomic(self.path, _csv_text([self.columns]))
            return
        if rows and rows[0]:
            self.columns = rows[0]  # keep the file's own columns
        _write_atomic(self.path, _csv_text(rows or [self.columns]))

    def _kept_rows(self, start_epoch: int) -> list[list[str]] | None:
        """The file's header and its rows of epochs before ``start_epoch``; None if no such file."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return None
        with open(self.path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
        if not rows:
            return None
        header, body = rows[0], rows[1:]
        col = header.index("epoch") if "epoch" in header else 0
        whole = [r for r in body if len(r) == len(header)]  # a row torn by a crash is dropped
        return [header, *(r for r in whole if _as_int(r[col]) < start_epoch)]

    def on_epoch_end(self, state: RunState) -> None:
        if not is_main() or not self.learn.recorder.history:
            return
        row = self.learn.recorder.history[-1]
        cells = [_cell(row.get(name)) for name in self.columns]
        from learnkit.atomic import open_no_follow

        with open_no_follow(self.path, "ab") as f:  # never through a link planted at history.csv
            f.write(_csv_text([cells]).encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def _as_int(text: str) -> float:
    try:
        return int(text)
    except ValueError:
        return float("inf")  # not an epoch number: dropped


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _csv_text(rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    from learnkit.atomic import write_atomically

    write_atomically(path, lambda f: f.write(text), binary=False)
