"""The one place errors are handled: one line on stderr, the exit code of DESIGN.md section 6."""

from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from learnkit.cli.app import app as learnkit_app
from learnkit.cli.group import LearnkitGroup
from learnkit.cli.options import schema_option
from learnkit.errors import CheckpointError, DataError, RunInterrupted, UsageError

app = typer.Typer(cls=LearnkitGroup, pretty_exceptions_enable=False)
RAISES = {
    "usage": UsageError("unknown arch 'resnet19'; did you mean: resnet18?"),
    "data": DataError("no images under 'x'"),
    "checkpoint": CheckpointError("'junk' is not a safetensors file"),
    "interrupted": RunInterrupted("interrupted; saved 'last'"),
    "ctrl-c": KeyboardInterrupt(),
    "bug": RuntimeError("something\nbroke"),
}


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug")] = False) -> None:
    """A root with the --debug option, as learnkit's."""


@app.command()
def fail(what: str) -> None:
    raise RAISES[what]


@app.command()
def lr(value: schema_option("lr")[0] = "1e-3") -> None:
    print(repr(value))


@app.command()
def warn() -> None:
    import warnings

    warnings.warn("skipped 2 unreadable images; first: a.png (truncated)", UserWarning, stacklevel=1)


runner = CliRunner()


@pytest.mark.parametrize(
    ("what", "code"),
    [("usage", 2), ("data", 3), ("checkpoint", 4), ("interrupted", 130), ("ctrl-c", 130), ("bug", 1)],
)
def test_error_is_one_line_with_its_exit_code(what, code):
    result = runner.invoke(app, ["fail", what])
    assert result.exit_code == code
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr


def test_unexpected_error_names_its_type_and_hints_at_debug():
    result = runner.invoke(app, ["fail", "bug"])
    assert (
        result.stderr.strip() == "error: RuntimeError: something broke (run with --debug for the traceback)"
    )


def test_debug_shows_the_traceback():
    result = runner.invoke(app, ["--debug", "fail", "data"])
    assert result.exit_code == 3
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1] == "error: no images under 'x'"


def test_bad_option_value_is_a_usage_error():
    result = runner.invoke(app, ["lr", "--lr", "fast"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: Invalid value for '--lr'")
    assert "'fast' is not a number" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_slice_option_reaches_the_command():
    result = runner.invoke(app, ["lr", "--lr", "1e-5:1e-3"])
    assert result.stdout.strip() == "slice(1e-05, 0.001, None)"


def test_unknown_command_suggests_the_close_name():
    result = runner.invoke(learnkit_app, ["fitt"])
    assert result.exit_code == 2
    assert "Did you mean 'fit'" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_unknown_global_option_is_a_usage_error():
    result = runner.invoke(learnkit_app, ["--bogus"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: No such option: --bogus")


def test_help_lists_the_commands():
    result = runner.invoke(learnkit_app, ["--help"])
    assert result.exit_code == 0
    for command in ("fit", "validate", "summary", "sample", "version"):
        assert command in result.stdout


def test_warnings_are_one_line():
    result = runner.invoke(app, ["warn"])
    assert result.exit_code == 0
    assert result.stderr == "warning: skipped 2 unreadable images; first: a.png (truncated)\n"
