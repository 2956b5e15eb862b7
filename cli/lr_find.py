"""``learnkit lr-find``: the LR range test; prints the suggested learning rates and the plot's path."""

import sys
from typing import Annotated

import typer

from .context import global_options
from .options import (
    ArchOpt,
    BsOpt,
    DataArg,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    PretrainedOpt,
    SeedOpt,
    SizeOpt,
    ValidPctOpt,
    WdOpt,
    WorkersOpt,
)
from .progress import make_lr_find_reporter
from .render import make_console, render_result


def lr_find(
    ctx: typer.Context,
    data: DataArg,
    arch: ArchOpt,
    start_lr: Annotated[float, typer.Option("--start-lr", help="First lr (> 0).")] = 1e-7,
    end_lr: Annotated[float, typer.Option("--end-lr", help="Last lr (> start lr).")] = 10.0,
    num_it: Annotated[
        int | None,
        typer.Option(
            "--num-it",
            min=2,
            help="Iterations (training batches) of the test; default: about 2 epochs of the training set, "
            "30 to 100 (each costs one training step; it stops early once the loss passes 4x its best).",
            show_default=False,
        ),
    ] = None,
    stop_div: Annotated[
        bool, typer.Option("--stop-div/--no-stop-div", help="Stop when the loss diverges.")
    ] = True,
    wd: WdOpt = None,
    bs: BsOpt = 64,
    size: SizeOpt = 64,
    seed: SeedOpt = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="DIR",
            help="Folder for plots/lr_find.png (default: a new runs/lr-find/N).",
            show_default=False,
            rich_help_panel="Checkpoints",
        ),
    ] = None,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    valid_pct: ValidPctOpt = None,
    precision: PrecisionOpt = "fp32",
    pretrained: PretrainedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the LR range test of ARCH on DATA; prints suggestions and saves PATH/plots/lr_find.png.

    The model is put back as it was: no checkpoint is written or changed.
    """
    from learnkit.jobs.lr_find import lr_find as run_lr_find
    from learnkit.jobs.runs import new_run_path

    if path is None:
        path = str(new_run_path("lr-find"))

    with make_lr_find_reporter(global_options(ctx), num_it) as reporter:
        result = run_lr_find(
            data,
            arch,
            start_lr=start_lr,
            end_lr=end_lr,
            num_it=num_it,
            stop_div=stop_div,
            wd=wd,
            bs=bs,
            size=size,
            seed=seed,
            path=path,
            workers=workers,
            device=device,
            valid_pct=valid_pct,
            precision=precision,
            pretrained=pretrained,
            reporter=reporter,
        )
    if result.get("plot") and not global_options(ctx).quiet:
        print(f"plot: {result['plot']}", file=sys.stderr, flush=True)
    render_result(result, make_console(), as_json=as_json, skip=() if as_json else ("plot",))
