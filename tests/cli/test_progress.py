"""The fit reporter: rows as the fit goes, a live bar only on a terminal, plain lines otherwise."""

from io import StringIO

from rich.console import Console

from learnkit.cli.context import GlobalOptions
from learnkit.cli.progress import Reporter, format_time, make_reporter

NAMES = ["epoch", "train_loss", "valid_loss", "accuracy", "time"]


def _fit(reporter: Reporter, epochs: int = 2, batches: int = 3) -> None:
    reporter.fit_start(epochs, NAMES)
    for epoch in range(epochs):
        reporter.epoch_start(epoch, batches)
        for i in range(batches):
            reporter.batch_end(i)
        reporter.epoch_end(
            {"epoch": epoch, "train_loss": 0.5, "valid_loss": 0.25, "accuracy": 0.875, "time": 65.2}
        )
    reporter.fit_end()


def _console(terminal: bool = False) -> tuple[Console, StringIO]:
    out = StringIO()
    return Console(file=out, width=100, force_terminal=terminal, color_system=None), out


def test_rows_under_one_header_and_plain_progress_lines():
    table, table_out = _console()
    progress, progress_out = _console()
    _fit(Reporter(table, progress, live=False))
    lines = table_out.getvalue().splitlines()
    assert lines[0].split() == NAMES
    assert lines[1].split() == ["0", "0.500000", "0.250000", "0.875000", "01:05"]
    assert len(lines) == 3
    plain = progress_out.getvalue()
    assert "\r" not in plain
    assert plain.splitlines()[1].startswith("epoch 1 (of 2)  train_loss 0.500000")
    assert len(plain.splitlines()) == 2


def test_live_bar_is_transient_and_rows_stay():
    table, table_out = _console()
    progress, progress_out = _console(terminal=True)
    _fit(Reporter(table, progress, live=True))
    assert len(table_out.getvalue().splitlines()) == 3
    assert "epoch 0 (of 2)" not in table_out.getvalue()


def test_no_table_no_progress_prints_nothing(capsys):
    _fit(Reporter(None, None))  # --json --quiet: nothing at all, and no error
    assert capsys.readouterr() == ("", "")


def test_rows_without_names_take_their_header_from_the_first_row():
    table, table_out = _console()
    reporter = Reporter(table, None)
    reporter.fit_start(1, [])
    reporter.epoch_end({"epoch": 0, "train_loss": 1.0, "time": 1})
    assert table_out.getvalue().splitlines()[0].split() == ["epoch", "train_loss", "time"]


def test_make_reporter_routes_streams(monkeypatch, capsys):
    monkeypatch.setenv("CI", "1")
    plain = make_reporter(GlobalOptions(), as_json=False)
    assert plain.table is not None and not plain.live
    as_json = make_reporter(GlobalOptions(), as_json=True)
    assert as_json.table is not None and as_json.table.console.stderr
    assert as_json.progress is None  # the rows on stderr already give one line per epoch
    quiet = make_reporter(GlobalOptions(quiet=True), as_json=True)
    assert quiet.table is None and quiet.progress is None


def test_format_time():
    assert format_time(5.4) == "00:05.4"
    assert format_time(0.26) == "00:00.3"
    assert format_time(61) == "01:01"
    assert format_time(3725) == "1:02:05"
    assert format_time("n/a") == "n/a"


def test_live_bar_is_taken_down_when_the_fit_fails():
    progress, _ = _console(terminal=True)
    reporter = Reporter(None, progress, live=True)
    try:
        with reporter:
            reporter.fit_start(2, NAMES)
            reporter.epoch_start(0, 3)
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert reporter._bar is None and not progress.is_alt_screen
