"""``learnkit fit-one-cycle``: train an arch from the zoo with the 1cycle policy."""

from typing import Annotated

import typer

from .context import global_options
from .options import (
    ArchOpt,
    BsOpt,
    DataArg,
    DeviceOpt,
    DivFactorOpt,
    EpochsOpt,
    FinalDivOpt,
    JsonOpt,
    LrOpt,
    MomsOpt,
    PathOpt,
    PctStartOpt,
    PrecisionOpt,
    PretrainedOpt,
    SeedOpt,
    SizeOpt,
    ValidPctOpt,
    WdOpt,
    WorkersOpt,
)
from .progress import make_reporter
from .render import make_console, render_result


def fit_one_cycle(
    ctx: typer.Context,
    data: DataArg,
    arch: ArchOpt,
    epochs: EpochsOpt = 1,
    lr: LrOpt = "3e-3",
    moms: MomsOpt = "0.95,0.85",
    pct_start: PctStartOpt = 0.3,
    div_factor: DivFactorOpt = 25.0,
    final_div: FinalDivOpt = None,
    wd: WdOpt = None,
    bs: BsOpt = 64,
    size: SizeOpt = 64,
    seed: SeedOpt = None,
    path: PathOpt = ".",
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    valid_pct: ValidPctOpt = None,
    precision: PrecisionOpt = "fp32",
    pretrained: PretrainedOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the lr/momentum schedule (and plot it) without training.")
    ] = False,
) -> None:
    """Train ARCH on DATA for one cycle of EPOCHS epochs peaking at LR; saves PATH/models/last."""
    from learnkit import runner

    if dry_run:
        from learnkit.jobs.lr_find import plan_one_cycle

        plan = plan_one_cycle(
            data,
            arch,
            epochs,
            lr,
            moms=moms,
            div_factor=div_factor,
            pct_start=pct_start,
            final_div=final_div,
            bs=bs,
            size=size,
            seed=seed,
            path=path,
            workers=workers,
            device=device,
            valid_pct=valid_pct,
            precision=precision,
            pretrained=pretrained,
        )
        render_result(plan, make_console(), as_json=as_json)
        return
    with make_reporter(global_options(ctx), as_json=as_json) as reporter:
        result = runner.train(
            data,
            arch,
            epochs,
            lr,
            wd=wd,
            schedule="one_cycle",
            moms=moms,
            pct_start=pct_start,
            div_factor=div_factor,
            final_div=final_div,
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
    render_result(result, make_console(), as_json=as_json, skip=("history",))
