"""The global options (``--debug``, ``--quiet``) as the commands see them."""

from dataclasses import dataclass

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
    """The root command's ``--debug``/``--quiet`` as parsed (known before any callback runs)."""
    if ctx is None:
        return GlobalOptions()
    params = ctx.find_root().params
    return GlobalOptions(debug=bool(params.get("debug")), quiet=bool(params.get("quiet")))
