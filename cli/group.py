"""The one place where a failed command becomes one line on stderr and an exit code.

docs/design.md section 5: errors are one clear line, no traceback unless ``--debug``; exit 2 for usage
errors, 3 for bad data, 4 for an unusable checkpoint, 130 when interrupted, 1 for anything else.
"""

import difflib
import errno
import importlib
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from learnkit.errors import LearnkitError

from .coerce import plain_coercion
from .context import add_global_options, global_options, tidy_help
from .controls import escape_controls

INTERRUPTED = 130

_reported = False  # whether this process printed its error line (see LearnkitGroup.main)


def report_error(message: str, exc: BaseException | None = None, *, debug: bool = False) -> None:
    """Print ``error: <message>`` as one line on stderr, preceded by the traceback when ``debug``.

    Control characters (from file or class names) are shown escaped, never sent to the terminal.
    """
    global _reported
    if debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    line = escape_controls(" ".join(message.split())) or "failed"  # one line, whatever it holds
    print(f"error: {line}", file=sys.stderr, flush=True)
    _reported = True


def exit_reported_elsewhere(code: int) -> typer.Exit:
    """The exit to raise when another process printed the error line (torchrun's ranks): none here."""
    global _reported
    _reported = True
    return typer.Exit(code)


def ignore_further_signals() -> None:
    """After an interrupt is being handled, more Ctrl-C/SIGTERM must not break the clean exit."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):  # not the main thread
            pass


def interrupted() -> typer.Exit:
    """Report an interrupt (one ``error: interrupted`` line, further signals ignored); the exit to raise."""
    ignore_further_signals()
    report_error("interrupted")
    return typer.Exit(INTERRUPTED)


def show_warning(message: Warning | str, category: type[Warning], *_args: object, **_kwargs: object) -> None:
    """``warnings.showwarning`` for the CLI: ``warning: <message>`` as one line on stderr."""
    line = escape_controls(" ".join(str(message).split()))
    print(f"warning: {line}", file=sys.stderr, flush=True)


def pipe_closed() -> int:
    """A reader closed our output (``| head``): what was asked is written, so end quietly, exit 0.

    stdout and stderr are pointed at ``/dev/null`` so that the interpreter's final flush of
    whatever is still buffered raises nothing (Python's documented recipe for SIGPIPE).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    return 0


def _describe(exc: BaseException) -> tuple[str, int]:
    """The message and exit code for an exception raised while a command ran."""
    if isinstance(exc, LearnkitError):
        return str(exc) or type(exc).__name__, exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # a path argument: usage
        name = str(exc.filename or "")
        shown = name if len(name) <= 60 else f"{name[:60]}... ({len(name)} characters)"
        return f"a path is too long for the file system: {shown}", 2
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" {exc.filename}" if exc.filename else ""
        return (
            f"could not write{where}: {os.strerror(exc.errno).lower()}; the files written before are intact"
        ), 1
    detail = str(exc)
    return (f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__), 1


def _usage_message(exc: typer.TyperException) -> str:
    """A click usage error as one line, with the command's help hint when it has one."""
    message = exc.format_message().replace("Value error, ", "")  # typer's pydantic wording
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message = f"{message.rstrip()} (see '{ctx.command_path} {ctx.help_option_names[0]}')"
    return message


class LearnkitGroup(TyperGroup):
    """The root command group: runs a command and maps what it raises to an exit code.

    Exceptions from the command body are handled in :meth:`invoke`, where ``--debug`` is known;
    usage errors that click raises before (bad global options) are handled in :meth:`main`.
    """

    lazy_commands: dict[str, tuple[str, str, str]] = {}
    """Commands imported on first use: ``name: (module in learnkit.cli, attribute, one-line help)``;
    the attribute is a command function, a Typer app (a group), or ``f()``: ``f(name)`` makes it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self.commands.values())  # --debug/--quiet after the command name too
        tidy_help([self])
        plain_coercion([self])

    def list_commands(self, ctx: typer.Context) -> list[str]:
        """The command names, in the order of :attr:`lazy_commands` (no command is imported)."""
        return [*self.lazy_commands, *(n for n in self.commands if n not in self.lazy_commands)]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        """The command ``cmd_name``, its module imported now if it was not yet."""
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self._load(cmd_name), cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        """Typer's, with the close names (``Did you mean 'fit'?``) taken from every command, loaded
        or not."""
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as exc:
            message = getattr(exc, "message", None)
            if args and isinstance(message, str) and "Did you mean" not in message:
                matches = difflib.get_close_matches(args[0], self.list_commands(ctx))
                if matches:
                    exc.message = f"{message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise

    def _load(self, name: str) -> Any:
        from typer.main import get_command

        from .helpfmt import LearnkitCommand

        module, attr, _ = self.lazy_commands[name]
        target = getattr(importlib.import_module(f"{__package__}.{module}"), attr.removesuffix("()"))
        if attr.endswith("()"):  # a factory of commands (the training commands, from the schema)
            target = target(name)
        if isinstance(target, typer.Typer):
            command = get_command(target)
        else:
            single = typer.Typer(add_completion=False)
            single.command(name, cls=LearnkitCommand)(target)
            command = get_command(single)
        command.name = name
        add_global_options([command])
        tidy_help([command])
        plain_coercion([command])
        return command

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        """The root's help: options, then the commands with their one-line help (none imported)."""
        from .helpfmt import render_group_help

        render_group_help(self, ctx, [(name, help) for name, (_, _, help) in self.lazy_commands.items()])

    def get_params(self, ctx: typer.Context) -> list[Any]:
        """The root's parameters, with Typer's completion flags (added after ``__init__``) tidied."""
        tidy_help([self])
        plain_coercion([self])
        return super().get_params(ctx)

    def invoke(self, ctx: typer.Context) -> Any:
        """Run the chosen command; turn any error into one stderr line and ``typer.Exit(code)``.

        Warnings (e.g. skipped images) print as one ``warning:`` line each, unless ``--debug``.
        """
        try:
            with warnings.catch_warnings():
                if not global_options(ctx).debug:
                    warnings.showwarning = show_warning
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            raise typer.Exit(pipe_closed()) from None
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                raise
            report_error(_usage_message(exc))
            raise typer.Exit(getattr(exc, "exit_code", 2)) from None
        except (Exception, KeyboardInterrupt) as exc:
            message, code = _describe(exc)
            if code == INTERRUPTED:
                ignore_further_signals()
            if code == 1 and not global_options(ctx).debug:
                message += " (run with --debug for the traceback)"
            report_error(message, exc, debug=global_options(ctx).debug)
            raise typer.Exit(code) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Click's ``main``, with usage errors printed as one line (exit 2), and an ``error:
        interrupted`` line for an interrupt Typer ended silently (exit 130)."""
        global _reported
        _reported = False
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()
            else:
                report_error(_usage_message(exc))
            code = getattr(exc, "exit_code", 2)
        except typer.Abort:
            report_error("aborted")
            code = 1
        except KeyboardInterrupt:  # outside Typer's main loop, e.g. in shell completion
            code = interrupted().exit_code
        except BrokenPipeError:  # e.g. usage text into a closed pipe
            code = pipe_closed()
        except SystemExit as exc:
            # rich (which prints the help) meets a closed pipe by pointing stdout at /dev/null and
            # exiting 1; for us a reader that has seen enough is not a failure
            code = pipe_closed() if exc.code == 1 and _stdout_is_devnull() else exc.code
        if code == INTERRUPTED and not _reported:
            # Typer's main turns a KeyboardInterrupt raised outside invoke (while the root's options
            # are parsed, as it enters or leaves the command's context) into a silent exit 130
            code = interrupted().exit_code
        if not standalone_mode:
            return code
        _exit(code if isinstance(code, int) else 0 if code is None else 1)


def _stdout_is_devnull() -> bool:
    try:
        out, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (out.st_dev, out.st_ino) == (null.st_dev, null.st_ino)


def _exit(code: int) -> NoReturn:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = pipe_closed()
    sys.exit(code)
