"""A command's ``--help`` that reads well at 80 columns: options in panels, one line each.

Typer's rich help gives each part of an option (long name, short name, negative name, type,
range) a column of its own, so at 80 columns the description is squeezed into ~17 characters
and ``fit-one-cycle --help`` runs to 170 lines. Here each option is one cell (``--lr LR``,
``--freeze/--no-freeze``, ``-q, --quiet``) beside its help, grouped in the panels the option
definitions name (``rich_help_panel``: Data, Model, Schedule, Checkpoints, Runtime), with no
``<bool>`` and no ranges (the values are still checked; a bad one says what is allowed).
"""

from __future__ import annotations

import inspect
import os
import shutil
import sys
import textwrap
from typing import Any

from typer.core import TyperCommand, TyperGroup

RUNTIME = "Runtime"
ORDER = ["Arguments", "Data", "Model", "Schedule", "Checkpoints", "Options", RUNTIME]
_TYPE_METAVARS = {"int": "N", "int range": "N", "float": "X", "float range": "X", "str": "TEXT"}


def _metavar(param: Any, ctx: Any) -> str:
    """What follows the option's name: its metavar, its choices (``fp32|bf16``) or a one-word type."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    if param.metavar:
        return str(param.metavar)
    shown = str(param.display_type(ctx) or "").strip("<>")
    return _TYPE_METAVARS.get(shown, shown or "VALUE")


def _names(param: Any, ctx: Any) -> str:
    """``-q, --quiet``, ``--freeze/--no-freeze`` or ``--lr LR``; an argument's metavar."""
    if param.param_type_name == "argument":
        return str(param.metavar or param.name.upper())
    short = [o for o in param.opts if not o.startswith("--")]
    long = [o for o in param.opts if o.startswith("--")]
    name = "/".join(long + list(param.secondary_opts))
    text = ", ".join([*short, name]) if short else name
    meta = _metavar(param, ctx)
    return f"{text} {meta}" if meta else text


def _default(param: Any, ctx: Any) -> str:
    """`` [default: X]`` for an option whose default says something, else ``""``."""
    if param.param_type_name == "argument":
        return ""  # an argument is required by its place in the usage line
    if param.required:
        return " [required]"
    if getattr(param, "is_flag", False) or not param.show_default:
        return ""
    value = param.get_default(ctx, call=False)
    if value is None or value == "" or callable(value):
        return ""
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    return f" [default: {value}]"


def _panels(command: Any, ctx: Any) -> dict[str, list[Any]]:
    """The visible parameters by panel, panels in order of first use, Runtime last."""
    panels: dict[str, list[Any]] = {}
    for param in command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        if param.name in ("install_completion", "show_completion") and ctx.parent is not None:
            continue  # the root command's business
        default = "Arguments" if param.param_type_name == "argument" else "Options"
        panel = RUNTIME if param.name == "help" else getattr(param, "rich_help_panel", None) or default
        panels.setdefault(panel, []).append(param)
    known = [name for name in ORDER if name in panels]
    return {name: panels[name] for name in known + [n for n in panels if n not in ORDER]}


def _style(text: str, codes: str, colour: bool) -> str:
    return f"\x1b[{codes}m{text}\x1b[0m" if colour and text else text


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters, broken between words (a longer word is cut)."""
    return textwrap.wrap(text, max(width, 1), break_on_hyphens=False) or [""]


def _panel(title: str, rows: list[tuple[str, str]], width: int, colour: bool) -> list[str]:
    """A rounded box titled ``title``: each row's name (never wrapped) beside its help (wrapped)."""
    inner = width - 4  # "│ " and " │"
    names = max(len(name) for name, _ in rows)
    text_width = max(inner - names - 2, 10)
    top = f"╭─ {title} "
    lines = [top + "─" * max(width - len(top) - 1, 0) + "╮"]
    for name, text in rows:
        for i, part in enumerate(_wrap(text, text_width)):
            cell = name if i == 0 else ""
            body = f"{cell:<{names}}  {part}"
            pad = " " * max(inner - len(body), 0)
            lines.append(f"│ {_style(cell, '1;36', colour)}{' ' * (names - len(cell))}  {part}{pad} │")
    lines.append("╰" + "─" * max(width - 2, 0) + "╯")
    return lines


def _terminal() -> tuple[int, bool]:
    """The help's width (``COLUMNS``, the terminal's, else 80) and whether to colour it (a terminal
    that is not ``TERM=dumb``, without ``NO_COLOR``; ``FORCE_COLOR`` forces it)."""
    width = shutil.get_terminal_size((80, 24)).columns
    if os.environ.get("FORCE_COLOR"):
        return width, True
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    colour = tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    return width, colour


def render_help(command: Any, ctx: Any, commands: list[tuple[str, str]] | None = None) -> None:
    """Print ``command``'s help on stdout: usage, description, then one panel per option group
    (and, for a group, a panel of its ``commands``: ``(name, one-line help)``).

    Drawn here in plain text (rich's panels took longer to import and render than the rest of
    ``learnkit --help``): the same rounded boxes, names in bold cyan on a colour terminal."""
    width, colour = _terminal()
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [_style(line, "1", colour) for line in _wrap(f"Usage: {ctx.command_path} {usage}", width)]
    lines.append("")
    for paragraph in inspect.cleandoc(command.help or "").split("\n\n"):
        if paragraph.strip():  # lines of a paragraph are joined, then wrapped to the width
            lines += [*_wrap(" ".join(paragraph.split()), width), ""]
    panels = {
        name: [(_names(p, ctx), " ".join(str(getattr(p, "help", None) or "").split()) + _default(p, ctx))
               for p in params]
        for name, params in _panels(command, ctx).items()
    }  # fmt: skip
    if commands:
        panels["Commands"] = list(commands)
    for name, rows in panels.items():
        lines += _panel(name, rows, width, colour)
    sys.stdout.write("\n".join(lines) + "\n")


def render_group_help(group: Any, ctx: Any, commands: list[tuple[str, str]]) -> None:
    """A group's help (:func:`render_help`) with its ``commands``' one-line help."""
    render_help(group, ctx, commands)


class LearnkitCommand(TyperCommand):
    """A Typer command whose ``--help`` is :func:`render_help`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        render_help(self, ctx)


class LearnkitSubgroup(TyperGroup):
    """A Typer group (``learnkit zoo``) whose ``--help`` is :func:`render_help` with its commands."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        commands = [(name, self.commands[name].get_short_help_str(200)) for name in self.list_commands(ctx)]
        render_group_help(self, ctx, commands)
