"""The training commands ``fit``, ``fit-one-cycle`` and ``unet``, generated from the RunConfig schema.

No training option is written here: :func:`training_command` builds each command's signature from
the fields of :mod:`learnkit.jobs.config` that apply to it (their help, panel, default for that
command, flag and metavar are the schema's), and Typer builds the command from that signature.
Bounds are not given to click: a value is checked once, after the layers are merged (the
command's defaults < a ``--config`` file < the options typed on the command line), by
:meth:`RunConfig.validate`, with the same message and exit code 2 whichever layer gave it.

Under torchrun every rank runs the command; only rank 0 shows progress, warnings, the result and
the one-line errors of learnkit (the other ranks exit with the same code, silently).
"""

import inspect
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .context import global_options
from .group import exit_reported_elsewhere
from .options import JsonOpt, schema_option

DOCS = {
    "fit": "Train ARCH on DATA at a constant LR into a run folder (Ctrl-C saves, exit 130).",
    "fit-one-cycle": "Train ARCH on DATA with 1cycle into a run folder (Ctrl-C saves, exit 130).",
    "unet": "Train a U-Net over ARCH on DATA with 1cycle into a run folder.",
}
CHECKPOINTS, SCHEDULE = "Checkpoints", "Schedule"
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Options from YAML (replays config.yaml).",
        rich_help_panel=CHECKPOINTS,
    ),
]
PrintConfigOpt = Annotated[
    bool,
    typer.Option("--print-config", help="Print the config (YAML); no training.", rich_help_panel=CHECKPOINTS),
]
DryRunOpt = Annotated[
    bool,
    typer.Option("--dry-run", help="Plot the lr/momentum schedule; no training.", rich_help_panel=SCHEDULE),
]


def training_command(command: str) -> Callable[..., None]:
    """The Typer callback of training command ``command``: ``ctx``, one parameter per schema option
    that applies to it, then ``--json``, ``--config``, ``--print-config`` (and ``--dry-run`` for
    fit-one-cycle)."""
    from learnkit.jobs.config import schema

    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    for name in schema(command):
        annotation, default = schema_option(name, command, checked=False)
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        )
    extra: list[tuple[str, Any, Any]] = [("as_json", JsonOpt, False)]
    if command == "fit-one-cycle":
        extra.append(("dry_run", DryRunOpt, False))
    extra += [("config", ConfigOpt, None), ("print_config", PrintConfigOpt, False)]
    for name, annotation, default in extra:
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
        )

    def run_command(ctx: typer.Context, **_: Any) -> None:
        if ctx.params.get("dry_run"):
            dry_run(ctx, command)
        else:
            train_command(ctx, command)

    run_command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    run_command.__annotations__ = {p.name: p.annotation for p in params}
    run_command.__doc__ = DOCS[command]
    run_command.__name__ = command.replace("-", "_")
    return run_command


def build_config(ctx: typer.Context, command: str) -> Any:
    """The effective RunConfig of a training command: its defaults < the ``--config`` file (or the
    run's saved ``config.yaml`` for a ``--resume``) < the options typed on the command line, checked
    once. The seed is drawn here when no layer gives one (not for a resume, which keeps its run's)."""
    from learnkit.jobs.config import RunConfig, read_config_file, schema
    from learnkit.jobs.run_folder import replay_note

    options = schema(command)
    given = {k: v for k, v in ctx.params.items() if k in options and typed_in(ctx, k)}
    base_file = ctx.params.get("config")
    if given.get("resume") is not None and given.get("path") is None:
        if given.get("data") is not None:  # missing data is said first, before a run is looked for
            from learnkit.data.samples import resolve_data

            resolve_data(str(given["data"]))
        given["path"] = resumed_run(given["resume"], command)  # the latest run, said on stderr
    if base_file is None and given.get("resume") is not None:
        saved = Path(given["path"]) / "config.yaml"
        base_file = saved if saved.is_file() else None
    base: dict[str, Any] = {}
    if base_file is not None:
        base = read_config_file(base_file)
        note = replay_note(base) if ctx.params.get("config") is not None else None
        if note:
            print(f"note: {note}", file=sys.stderr, flush=True)
        base.pop("segments", None)
        checkpoint = base.get("checkpoint")
        if isinstance(checkpoint, dict):  # how that run started, not how this one does
            left = ("resume", "init_from", "exist_ok", "reshard")
            if ctx.params.get("config") is not None:
                left += ("path", "name")  # a replay writes a new run folder unless told where
            base["checkpoint"] = {k: v for k, v in checkpoint.items() if k not in left}
        runtime = base.get("runtime")
        if given.get("resume") is not None and isinstance(runtime, dict):
            # a resume runs on the processes asked now (one without --nproc); the run checks the count
            base["runtime"] = {k: v for k, v in runtime.items() if k != "nproc"}
    config = RunConfig.merge(command, base, given)
    return config if config.checkpoint.resume is not None else config.with_seed()


def resumed_run(resume: str, command: str) -> str:
    """The run folder a ``--resume`` without ``--path`` continues: the current folder when it is a
    run folder, else the latest run of the command's kind under runs/ (said on stderr); a
    checkpoint file's own run for ``--resume FILE``."""
    from learnkit.jobs.runs import locate_model

    task = "segmentation" if command == "unet" else "classification"
    _, run, note = locate_model(resume, None, task=task)
    if note:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return str(run)


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
    if config.checkpoint.path is not None and "RANK" not in os.environ:  # not a torchrun worker
        from learnkit.run_lock import refuse_if_in_use  # a folder in use: refused before torch loads

        refuse_if_in_use(config.checkpoint.path)
    relaunch_if_asked(ctx, config.runtime.nproc, config.runtime.seed)
    run_training(ctx, config, as_json=as_json)


def relaunch_if_asked(ctx: typer.Context, nproc: int | None, seed: int | None = None) -> None:
    """With ``--nproc N`` (N > 1) outside torchrun: run this same command under torchrun and exit
    with its code (every rank with the same ``seed``). Inside torchrun, or for N = 1, do nothing."""
    from learnkit.distributed import launched_by_torchrun

    if nproc is None or nproc <= 1 or launched_by_torchrun():
        return
    from learnkit.cli.launch import relaunch

    args = sys.argv[1:]
    if seed is not None and not typed_in(ctx, "seed"):
        args = [*args, "--seed", str(seed)]  # a drawn seed: the same one in every process
    raise exit_reported_elsewhere(relaunch(nproc, args, debug=global_options(ctx).debug))  # ranks report


def dry_run(ctx: typer.Context, command: str) -> None:
    """``fit-one-cycle --dry-run``: the 1cycle's lr/momentum plan of the run, plotted; no training."""
    from learnkit.jobs.lr_find import plan_one_cycle

    from .render import make_console, render_result

    plan = plan_one_cycle(build_config(ctx, command))
    render_result(plan, make_console(), as_json=bool(ctx.params.get("as_json")))


def run_training(ctx: typer.Context, config: Any, *, as_json: bool) -> None:
    """``learnkit.jobs.train.run(config)`` with the CLI's reporter; rank 0 renders the result (and a
    resumed run that had nothing left to do says so on stderr)."""
    from learnkit.cli.launch import user_command
    from learnkit.distributed import env_rank
    from learnkit.errors import LearnkitError
    from learnkit.jobs.train import run

    from .progress import make_reporter

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
    from .render import make_console, render_result, render_rows

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
