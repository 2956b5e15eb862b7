"""Shows a fit as it goes: the reporter that ``learnkit.callbacks.progress.ProgressCallback`` calls.

Two streams, as docs/design.md section 5 asks:

- the per-epoch table (epoch, train_loss, valid_loss, each metric, time) is a result, printed row
  by row on stdout -- or on stderr under ``--json``, where stdout carries only the JSON;
- progress goes to stderr: a live rich bar on an interactive terminal; otherwise (stderr not a TTY,
  or ``CI`` true) one plain line per epoch, never a carriage-return animation. ``--quiet`` hides it.
"""

import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from rich.console import Console

from .context import GlobalOptions
from .render import format_value, make_console

_MIN_WIDTH = 10  # a column is at least this wide, so rows line up without knowing values ahead


def format_time(seconds: Any) -> str:
    """Seconds as ``mm:ss`` (``h:mm:ss`` past an hour; ``00:ss.s`` under a minute, so a fast epoch
    does not read ``00:00``); text is returned as it is."""
    if not isinstance(seconds, int | float):
        return format_value(seconds)
    if seconds < 59.95:
        return f"00:{seconds:04.1f}"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_cell(name: str, value: Any) -> str:
    """A table cell: ``time`` as mm:ss, the epoch as an integer, the rest as :func:`format_value`."""
    if name == "time":
        return format_time(value)
    return format_value(value)


class EpochTable:
    """Prints the per-epoch rows under one header, each column padded to a fixed width."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.columns: list[str] = []

    def header(self, columns: Sequence[str]) -> None:
        """Print the header line (once)."""
        if self.columns:
            return
        self.columns = list(columns)
        self._line(self.columns, style="bold")

    def row(self, row: Mapping[str, Any]) -> None:
        """Print one epoch's row, adding the header first if it was not printed yet."""
        self.header(list(row))
        self._line([format_cell(name, row.get(name)) for name in self.columns])

    def _line(self, cells: Sequence[str], style: str | None = None) -> None:
        widths = [max(len(name), _MIN_WIDTH) for name in self.columns]
        text = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()
        if self.console.is_terminal:
            self.console.print(text, style=style, markup=False, highlight=False)
        else:
            self.console.out(text, highlight=False)


def _live_bar(console: Console, *fields: str) -> Any:
    """A transient rich bar on ``console``: description, bar, n/total, the extra ``fields``
    (text columns such as ``loss {task.fields[loss]}``), time left."""
    # imported here: only a live terminal needs it, and --help should not pay for it
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f) for f in fields]
    return Progress(
        *columns,
        TimeRemainingColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,  # stdout carries results: never routed through the progress console
        redirect_stderr=False,
    )


def _fmt_loss(loss: float | None) -> str:
    return "" if loss is None else f"loss {loss:.4f}"


def _fmt_lr(lr: float | None) -> str:
    return "" if lr is None else f"lr {lr:.2e}"


class Reporter:
    """The CLI's progress reporter (the protocol of ``ProgressCallback``).

    Args:
        table: where the per-epoch rows go, or ``None`` to print none.
        progress: the stderr console for progress, or ``None`` for no progress at all.
        live: draw a live bar on ``progress`` (interactive terminals only); otherwise print one
            plain line per epoch there.

    The live bar of an epoch shows the running smoothed loss; it is taken down (cleared) before
    the epoch's row prints, so a row never lands on the bar's line -- not even when stdout goes
    through ``| tee`` to the same terminal.
    """

    def __init__(self, table: Console | None, progress: Console | None, *, live: bool = False) -> None:
        self.table = EpochTable(table) if table is not None else None
        self.progress = progress
        self.live = live and progress is not None
        self.n_epochs = 0
        self._bar: Any = None  # a rich Progress while a live bar is up
        self._task: Any = None

    def fit_start(self, n_epochs: int, names: Sequence[str] = ()) -> None:
        """The fit begins: ``n_epochs`` epochs; ``names`` are the table's columns when known."""
        self.n_epochs = n_epochs
        if self.table is not None and "epoch" in names:
            self.table.header(names)

    def epoch_start(self, epoch: int, n_batches: int | None) -> None:
        """An epoch begins (``epoch`` counts from 0) with ``n_batches`` training batches."""
        if not self.live:
            return
        self._take_down()
        self._bar = _live_bar(self.progress, "{task.fields[loss]}")
        label = f"epoch {epoch + 1}/{self.n_epochs}" if self.n_epochs else f"epoch {epoch + 1}"
        self._task = self._bar.add_task(label, total=n_batches, loss="")
        self._bar.start()

    def batch_end(self, i: int, loss: float | None = None, lr: float | None = None) -> None:
        """Training batch ``i`` (from 0) of the current epoch is done; ``loss`` is the running
        smoothed loss when it was read."""
        if self._bar is not None and self._task is not None:
            fields = {"loss": _fmt_loss(loss)} if loss is not None else {}
            self._bar.update(self._task, completed=i + 1, **fields)

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        """An epoch is done: clear the bar, print its row, and a plain progress line when there is
        no live bar."""
        self._take_down()
        if self.table is not None:
            self.table.row(row)
        if self.progress is not None and not self.live:
            self.progress.out(_epoch_line(row, self.n_epochs), highlight=False)

    def _take_down(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
            self._task = None

    def fit_end(self) -> None:
        """The fit is over (or stopped): take the live bar down. Safe to call twice."""
        self._take_down()

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.fit_end()  # a failed or interrupted fit must not leave the bar (and a hidden cursor)


class LrFindReporter:
    """Progress of the LR range test: a live bar with the current lr and smoothed loss on a
    terminal, else a plain line about every tenth of the test (``--quiet``: nothing).

    Args:
        console: the stderr console, or ``None`` for no progress.
        num_it: the iterations of the test (the bar's total).
        live: draw a live bar (interactive terminals only).
    """

    def __init__(self, console: Console | None, num_it: int, *, live: bool = False) -> None:
        self.console, self.num_it, self.live = console, num_it, live and console is not None
        self.done = 0
        self._every = max(1, num_it // 10)
        self._bar: Any = None
        self._task: Any = None
        self._last: tuple[float | None, float | None] = (None, None)

    def fit_start(self, n_epochs: int, names: Sequence[str] = ()) -> None:
        self.done = 0
        if self.live:
            self._bar = _live_bar(self.console, "{task.fields[lr]}", "{task.fields[loss]}")
            self._task = self._bar.add_task("lr-find", total=self.num_it, lr="", loss="")
            self._bar.start()

    def epoch_start(self, epoch: int, n_batches: int | None) -> None:
        pass

    def batch_end(self, i: int, loss: float | None = None, lr: float | None = None) -> None:
        self.done += 1
        lr_now = lr if lr is not None else self._last[0]
        loss_now = loss if loss is not None else self._last[1]
        self._last = (lr_now, loss_now)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, lr=_fmt_lr(lr_now), loss=_fmt_loss(loss_now))
        elif self.console is not None and (self.done % self._every == 0 or self.done == self.num_it):
            parts = [f"lr-find {self.done}/{self.num_it}", _fmt_lr(lr_now), _fmt_loss(loss_now)]
            self.console.out("  ".join(p for p in parts if p), highlight=False)

    def epoch_end(self, row: Mapping[str, Any]) -> None:
        pass

    def fit_end(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> "LrFindReporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.fit_end()


def _epoch_line(row: Mapping[str, Any], n_epochs: int) -> str:
    """One plain progress line: ``epoch 2/5  train_loss 0.412345  ...  time 00:03``."""
    epoch = row.get("epoch")
    head = f"epoch {epoch + 1}/{n_epochs}" if isinstance(epoch, int) and n_epochs else f"epoch {epoch}"
    rest = [f"{name} {format_cell(name, value)}" for name, value in row.items() if name != "epoch"]
    return "  ".join([head, *rest])


def interactive(console: Console) -> bool:
    """Whether a live display suits ``console``: a terminal, and not under CI (``CI`` set to a
    true value; ``CI=false`` does not count)."""
    from learnkit.interactive import under_ci

    return console.is_terminal and not under_ci()


def make_reporter(options: GlobalOptions, *, as_json: bool) -> Reporter:
    """The reporter for a command's options: see the module docstring for where things go."""
    stdout, stderr = make_console(), make_console(stderr=True)
    live = interactive(stderr) and not options.quiet
    same = _same_file(sys.stdout, sys.stderr)  # e.g. both the terminal, or 2>&1
    if as_json:
        table = None if options.quiet else stderr
    else:
        # on one terminal, rows go through the bar's console so they print above the live bar
        table = stderr if live and same else stdout
    progress = None if options.quiet else stderr
    if progress is not None and not live and (table is stderr or same):
        progress = None  # the rows already show each epoch in that stream
    return Reporter(table, progress, live=live)


def _same_file(a: Any, b: Any) -> bool:
    """Whether two streams write to the same file (``2>&1``), so one line per epoch is enough."""
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def make_lr_find_reporter(options: GlobalOptions, num_it: int) -> LrFindReporter:
    """The LR range test's progress on stderr: live on a terminal, plain lines otherwise."""
    stderr = make_console(stderr=True)
    if options.quiet:
        return LrFindReporter(None, num_it)
    return LrFindReporter(stderr, num_it, live=interactive(stderr))


def track_rows(rows: Iterable[Any], console: Console | None, *, total: int | None = None) -> Iterator[Any]:
    """``rows`` as they come, with a live bar counting them on ``console`` (``None``: no bar).

    The bar is taken down when the rows end (or the consumer stops), before anything is rendered.
    """
    if console is None:
        yield from rows
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        redirect_stdout=False,
        redirect_stderr=False,
    )
    task = bar.add_task("predict", total=total)
    bar.start()
    try:
        for row in rows:
            bar.advance(task)
            yield row
    finally:
        bar.stop()
