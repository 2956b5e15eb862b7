"""What ``fit``, ``fit-one-cycle`` and ``unet`` share: the RunConfig from the options, ``--nproc``,
the run itself, and showing its result.

A training command's body is one call, ``train_command(ctx, "fit")``: its parameters (all from the
one definitions in :mod:`cli.options`) become a :class:`~learnkit.jobs.config.RunConfig`, over the
``--config`` file when there is one (options given on the command line win), over the saved
``PATH/config.yaml`` for a ``--resume``, over the command's defaults otherwise.

Under torchrun every rank runs the command; only rank 0 shows progress, warnings, the result and
the one-line errors of learnkit (the other ranks exit with the same code, silently).
"""

import sys
import warnings
from pathlib import Path
from typing import Any

import typer

from .context import global_options
from .group import exit_reported_elsewhere
from .progress import make_reporter
from .render import make_console, render_result, render_rows

NOT_CONFIG = ("config", "print_config", "as_json", "dry_run")  # how to run the command, not the run


def build_config(ctx: typer.Context, command: str) -> Any:
    """The effective RunConfig of a training command (see the module docstring); the seed is drawn
    here when no layer gives one (not for a resume, which keeps its run's)."""
    from learnkit.jobs.config import RunConfig, lr_text

    params = {k: v for k, v in ctx.params.items() if k not in NOT_CONFIG}
    params = {k: lr_text(v) if k in ("lr", "wd") and v is not None else v for k, v in params.items()}
    base_file = ctx.params.get("config")
    if base_file is None and params.get("resume") is not None:
        saved = Path(params.get("path") or ".") / "config.yaml"
        base_file = saved if saved.is_file() else None
    if base_file is not None:
        base = RunConfig.load(base_file, command)
        given = {k: v for k, v in params.items() if typed_in(ctx, k)}
        params = {**base.options(), "resume": None, "init_from": None, "exist_ok": False, **given}
    config = RunConfig.from_flat(command, **params)
    return config if config.checkpoint.resume is not None else config.with_seed()


def typed_in(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was given on the command line (not a default): click's parameter
    source (typer vendors click, so the enum is compared by name)."""
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) == "COMMANDLINE"


def train_command(ctx: typer.Context, command: str) -> None:
    """The whole of a training command: config, ``--print-config``, ``--nproc``, run, render."""
    config = build_config(ctx, command)
    as_json = bool(ctx.params.get("as_json"))
    if ctx.params.get("print_config"):
        sys.stdout.write(config.to_yaml())
        return
    relaunch_if_asked(ctx, config.runtime.nproc, config.runtime.seed)
    run_training(ctx, config, as_json=as_json)


def relaunch_if_asked(ctx: typer.Context, nproc: int | None, seed: int | None = None) -> None:
    """With ``--nproc N`` (N > 1) outside torchrun: run this same command under torchrun and exit
    with its code (every rank with the same ``seed``). Inside torchrun, or for N = 1, do nothing."""
    from learnkit.distributed import launched_by_torchrun

    if nproc is None or nproc <= 1 or launched_by_torchrun():
        return
    from learnkit.launch import relaunch

    args = sys.argv[1:]
    if seed is not None and not typed_in(ctx, "seed"):
        args = [*args, "--seed", str(seed)]  # a drawn seed: the same one in every process
    raise exit_reported_elsewhere(relaunch(nproc, args, debug=global_options(ctx).debug))  # ranks report


def run_training(ctx: typer.Context, config: Any, *, as_json: bool) -> None:
    """``learnkit.jobs.train.run(config)`` with the CLI's reporter; rank 0 renders the result (and a
    resumed run that had nothing left to do says so on stderr)."""
    from learnkit.distributed import env_rank
    from learnkit.errors import LearnkitError
    from learnkit.jobs.train import run
    from learnkit.launch import user_command

    main = env_rank() == 0
    opts = global_options(ctx)
    with warnings.catch_warnings():
        if not main:
            warnings.simplefilter("ignore")  # rank 0 already shows them
        with make_reporter(opts, as_json=as_json) as reporter:
            try:
                result = run(config, reporter=reporter if main else None, command=user_command())
            except LearnkitError as exc:
                if main:
                    raise
                raise exit_reported_elsewhere(exc.exit_code) from None  # the line comes from rank 0
    if not main:
        return
    if result.get("note"):
        print(f"note: {result['note']}", file=sys.stderr, flush=True)
    if not opts.quiet:  # --quiet: the paths are still in the result (--json)
        for plot in result.get("plots") or []:
            print(f"plot: {plot}", file=sys.stderr, flush=True)
    render_training_result(result, as_json=as_json)


def render_training_result(result: dict[str, Any], *, as_json: bool) -> None:
    """The result on stdout: JSON, or the values (a U-Net's per-class dice and IoU first)."""
    console = make_console()
    if as_json:
        render_result(result, console, as_json=True, skip=("note",))
        return
    skip = ("history", "note", "plots")
    if "classes" in result:
        per_class = [
            {"class": c, "dice": result["dice_per_class"].get(c), "iou": result["iou_per_class"].get(c)}
            for c in result["classes"]
        ]
        render_rows(per_class, console, columns=["class", "dice", "iou"])
        skip = (*skip, "dice_per_class", "iou_per_class", "classes")
    render_result(result, console, skip=skip)
