"""Options the commands share, made from the RunConfig schema (:mod:`learnkit.jobs.config`).

:func:`schema_option` turns a schema field into a Typer option with the schema's flag, help, panel
and metavar. The training commands take every option that way, unchecked, since their values are
checked once after the ``--config`` layers are merged (``learnkit.cli.training``); the other
commands (``lr-find``, ``validate``, ``tta``, ``predict``...) reuse a few of those options through
the aliases below, checked as their values arrive (the schema's bounds and messages, exit 2).
"""

import inspect
from typing import Annotated, Any

import typer

from learnkit.errors import UsageError

from .basic_options import JsonOpt, complete_arch, complete_model  # noqa: F401 - re-exported


def complete_logger(incomplete: str) -> list[str]:
    """The logger names (learnkit.loggers entry points) that start with ``incomplete`` (no torch)."""
    from learnkit.loggers import names

    return [name for name in names() if name.startswith(incomplete)]


_METAVARS = {"int": "N", "float": "X"}
_UNSET = inspect.Parameter.empty


def schema_option(name: str, command: str = "fit", *, checked: bool = True) -> tuple[Any, Any]:
    """The ``Annotated`` type and ``command``'s default of schema option ``name``.

    ``checked``: the value is converted and checked when click reads it (the schema's
    :func:`~learnkit.jobs.config.parse_option`, a bad value exits 2); unchecked, it stays as typed
    (text for rates and pairs) for a later merge and one check.
    """
    from learnkit.jobs.config import default_for, schema
    from learnkit.jobs.schema import opt_of

    f = schema(command)[name][1]
    o, kind, default = opt_of(f), str(f.type), default_for(f, command)
    common: dict[str, Any] = {"help": o.help, "rich_help_panel": o.panel, "hidden": o.hidden}
    if o.complete == "arch":
        common["autocompletion"] = complete_arch
    elif o.complete == "logger":
        common["autocompletion"] = complete_logger
    elif o.choices:
        choices = o.choices
        common["autocompletion"] = lambda incomplete: [c for c in choices if c.startswith(incomplete)]
    if checked and not kind.startswith("bool"):
        common["callback"] = _checker(name, command)
    if o.argument:
        info = typer.Argument(metavar=o.metavar, help=o.help, rich_help_panel=o.panel, show_default=False)
        return Annotated[str | None, info], default
    flags = (o.flag or "--" + name.replace("_", "-"),)
    metavar = o.metavar or ("|".join(o.choices) if o.choices else None)
    if kind.startswith("bool"):
        return Annotated[bool | None if "None" in kind else bool, typer.Option(*flags, **common)], default
    if o.kind == "names":
        info = typer.Option(*flags, metavar=metavar, show_default=False, **common)
        return Annotated[list[str] | None, info], None
    if o.kind is not None:  # text the schema converts: rates, pairs, a device
        shown = ",".join(str(v) for v in default) if isinstance(default, tuple) else default
        return Annotated[str | None, typer.Option(*flags, metavar=metavar, **common)], shown
    base = kind.split("|")[0].strip()
    py = {"int": int, "float": float}.get(base, str)
    metavar = metavar or _METAVARS.get(base)
    return Annotated[py | None, typer.Option(*flags, metavar=metavar, **common)], default


def _checker(name: str, command: str) -> Any:
    """A click callback: the value converted and checked by the schema, a UsageError as click's."""

    def check(value: Any) -> Any:
        from learnkit.jobs.config import lr_value, parse_option

        if value is None:
            return None
        try:
            parsed = parse_option(name, value, command)
            return lr_value(parsed, allow_zero=True) if name in ("lr", "wd") else parsed
        except UsageError as exc:
            raise typer.BadParameter(str(exc).partition(": ")[2] or str(exc)) from None

    return check


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Checkpoint: a name under PATH/models, or a file.",
        autocompletion=complete_model,
        rich_help_panel="Model",
    ),
]
# the training options other commands take too, checked as they arrive
DataArg = schema_option("data")[0]
ArchOpt = schema_option("arch")[0]
BsOpt = schema_option("bs")[0]
SizeOpt = schema_option("size")[0]
SeedOpt = schema_option("seed")[0]
PathOpt = schema_option("path")[0]
WorkersOpt = schema_option("workers")[0]
DeviceOpt = schema_option("device")[0]
PrecisionOpt = schema_option("precision")[0]
PretrainedOpt = schema_option("pretrained")[0]
ValidPctOpt = schema_option("valid_pct")[0]
WdOpt = schema_option("wd")[0]
