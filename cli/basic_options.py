"""The options and completions that need no RunConfig schema: ``--json``, arch and checkpoint
names. Apart from :mod:`learnkit.cli.options` (which builds options from the schema, importing
:mod:`learnkit.jobs.config`) so that ``learnkit version`` and ``learnkit zoo list`` start without it.
"""

from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.", rich_help_panel="Runtime")]


def complete_arch(incomplete: str) -> list[str]:
    """The registered arch names that start with ``incomplete`` (imports no torch)."""
    from learnkit import registry

    return [name for name in registry.names() if name.startswith(incomplete)]


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """The checkpoints under ``<--path>/models`` whose names start with ``incomplete``."""
    folder = Path(ctx.params.get("path") or ".") / "models"
    names = {p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")}
    return sorted(n for n in names if not n.endswith(".opt") and n.startswith(incomplete))
