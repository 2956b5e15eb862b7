"""What ``fit`` and ``fit-one-cycle`` share: ``--nproc``, the run itself, and showing its result.

Under torchrun every rank runs the command; only rank 0 shows progress, warnings, the result and
the one-line errors of learnkit (the other ranks exit with the same code, silently).
"""

import sys
import warnings
from typing import Any

import typer

from .context import global_options
from .progress import make_reporter
from .render import make_console, render_result


def relaunch_if_asked(ctx: typer.Context, nproc: int | None) -> None:
    """With ``--nproc N`` (N > 1) outside torchrun: run this same command under torchrun and exit
    with its code. Inside torchrun, or for N = 1, do nothing (the run proceeds here)."""
    from learnkit.distributed import launched_by_torchrun

    if nproc is None or nproc <= 1 or launched_by_torchrun():
        return
    from learnkit.launch import relaunch

    raise typer.Exit(relaunch(nproc, sys.argv[1:], debug=global_options(ctx).debug))


def run_training(ctx: typer.Context, *, as_json: bool, **options: Any) -> None:
    """``runner.train(**options)`` with the CLI's reporter; rank 0 renders the result (and a
    resumed run that had nothing left to do says so on stderr)."""
    from learnkit import runner
    from learnkit.distributed import env_rank
    from learnkit.errors import LearnkitError
    from learnkit.launch import user_command

    main = env_rank() == 0
    opts = global_options(ctx)
    with warnings.catch_warnings():
        if not main:
            warnings.simplefilter("ignore")  # rank 0 already shows them
        with make_reporter(opts, as_json=as_json) as reporter:
            try:
                result = runner.train(**options, reporter=reporter if main else None, command=user_command())
            except LearnkitError as exc:
                if main:
                    raise
                raise typer.Exit(exc.exit_code) from None  # the same line comes from rank 0
    if not main:
        return
    if result.get("note"):
        print(f"note: {result['note']}", file=sys.stderr, flush=True)
    for plot in result.get("plots") or []:
        print(f"plot: {plot}", file=sys.stderr, flush=True)
    render_result(result, make_console(), as_json=as_json, skip=("history", "note", "plots"))
