"""The ``--path`` and ``--model`` of the commands that read a model (predict, validate, tta, export,
summary): without ``--path`` they use the most recent run under ``runs/`` and say which on stderr
(:func:`learnkit.jobs.runs.locate_model`)."""

import sys
from pathlib import Path
from typing import Annotated

import typer


def complete_model(ctx: typer.Context, incomplete: str) -> list[str]:
    """The checkpoint names in ``--path``'s models/ (else the current folder's, else the latest
    run's) that start with ``incomplete``."""
    from learnkit.jobs.runs import latest_run

    run = ctx.params.get("path")
    if run is None:
        run = "." if Path("models").is_dir() else latest_run()
    if run is None:
        return []
    names = {p.name.removesuffix(".safetensors") for p in (Path(run) / "models").glob("*.safetensors")}
    return sorted(n for n in names if not n.endswith(".opt") and n.startswith(incomplete))


RunPathOpt = Annotated[
    str | None,
    typer.Option(
        "--path",
        metavar="DIR",
        help="Run folder of --model (default: here if it holds models/, else the latest run in runs/).",
        show_default=False,
        rich_help_panel="Checkpoints",
    ),
]
RunModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="Checkpoint: a name under PATH/models (best, last), a run folder, RUN/models/NAME, or a file.",
        autocompletion=complete_model,
        rich_help_panel="Model",
    ),
]


def locate(model: str | None, path: str | None, task: str | None = None) -> tuple[str, str]:
    """``(checkpoint file, run folder)`` for the options; the run used is said on stderr when it
    was found rather than given."""
    from learnkit.jobs.runs import locate_model

    file, run, note = locate_model(model, path, task=task)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return str(file), str(run)
