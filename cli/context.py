"""The global options (``--debug``, ``--quiet``): given before the command or after it.

``learnkit --quiet fit ...`` and ``learnkit fit ... --quiet`` mean the same: the root command
declares them, and :func:`add_global_options` puts copies on every subcommand whose values land in
the root's parameters, where :func:`global_options` reads them.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import typer


@dataclass(frozen=True)
class GlobalOptions:
    """Options given before the command name, e.g. ``learnkit --quiet fit ...``.

    Attributes:
        debug: show the full traceback when a command fails.
        quiet: hide progress (bars and per-epoch lines on stderr); results still print.
    """

    debug: bool = False
    quiet: bool = False


def global_options(ctx: typer.Context | None) -> GlobalOptions:
    """``--debug``/``--quiet`` as parsed, before the command name or after it."""
    if ctx is None:
        return GlobalOptions()
    params = ctx.find_root().params
    return GlobalOptions(debug=bool(params.get("debug")), quiet=bool(params.get("quiet")))


RUNTIME_PANEL = "Runtime"
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show the traceback on failure.", rich_help_panel=RUNTIME_PANEL),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Hide progress.", rich_help_panel=RUNTIME_PANEL),
]


def _store_in_root(ctx: Any, param: Any, value: Any) -> None:
    """A subcommand's copy of a global flag: set it on the root, where every reader looks."""
    if value:
        ctx.find_root().params[param.name] = True


def _global_params() -> list[Any]:
    """Click parameters for ``--debug`` and ``--quiet`` built the way Typer builds any option."""
    from typer.main import get_command

    def options(debug: DebugOpt = False, quiet: QuietOpt = False) -> None:
        """(a template)"""

    template = typer.Typer()
    template.command()(options)
    params = get_command(template).params
    for param in params:
        param.expose_value = False
        param.callback = _store_in_root
    return params


def tidy_help(commands: Iterable[Any]) -> None:
    """Help without noise: a flag (``--json``, ``--freeze/--no-freeze``, ``--help``) shows no
    ``<bool>`` type."""
    from typer._click.core import Context

    for command in commands:
        nested = getattr(command, "commands", None)
        if nested is not None:
            tidy_help(nested.values())
        # the help option is made on first use and kept: make it now, to tidy it too
        help_option = command.get_help_option(Context(command, help_option_names=["-h", "--help"]))
        for param in [*command.params, *([help_option] if help_option is not None else [])]:
            if getattr(param, "is_flag", False) and not getattr(param, "count", False):
                param.metavar = ""


def add_global_options(commands: Iterable[Any]) -> None:
    """Give every command in ``commands`` (and those of nested groups) ``--debug`` and ``--quiet``."""
    for command in commands:
        nested = getattr(command, "commands", None)
        if nested is not None:
            add_global_options(nested.values())
            continue
        names = {p.name for p in command.params}
        command.params.extend(p for p in _global_params() if p.name not in names)
