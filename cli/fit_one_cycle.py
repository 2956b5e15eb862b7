"""``learnkit fit-one-cycle``: train an arch from the zoo with the 1cycle policy."""

from typing import Annotated

import typer

from .options import (
    ArchOpt,
    BsOpt,
    CacheOpt,
    DataArg,
    DeterministicOpt,
    DeviceOpt,
    DivFactorOpt,
    EpochsOpt,
    FinalDivOpt,
    InitFromOpt,
    JsonOpt,
    LrOpt,
    MomsOpt,
    MonitorOpt,
    NprocOpt,
    PathOpt,
    PatienceOpt,
    PctStartOpt,
    PrecisionOpt,
    PretrainedOpt,
    ResumeOpt,
    SaveBestOpt,
    SeedOpt,
    SizeOpt,
    ValidPctOpt,
    WdOpt,
    WorkersOpt,
)
from .render import make_console, render_result
from .training import relaunch_if_asked, run_training


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
    workers: WorkersOpt = None,
    device: DeviceOpt = "auto",
    valid_pct: ValidPctOpt = None,
    precision: PrecisionOpt = "fp32",
    cache: CacheOpt = "auto",
    pretrained: PretrainedOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the lr/momentum schedule (and plot it) without training.")
    ] = False,
    monitor: MonitorOpt = None,
    patience: PatienceOpt = None,
    save_best: SaveBestOpt = True,
    resume: ResumeOpt = None,
    init_from: InitFromOpt = None,
    deterministic: DeterministicOpt = False,
    nproc: NprocOpt = None,
) -> None:
    """Train ARCH on DATA for one cycle of EPOCHS epochs peaking at LR; saves PATH/models/last.

    Ctrl-C stops at the next batch, saves last and exits 130; --resume continues from it.
    """
    cycle = dict(moms=moms, pct_start=pct_start, div_factor=div_factor, final_div=final_div)
    learner = dict(
        bs=bs, size=size, seed=seed, path=path, workers=workers, device=device, valid_pct=valid_pct,
        precision=precision, cache=cache, pretrained=pretrained,
    )  # fmt: skip
    if dry_run:
        from learnkit.jobs.lr_find import plan_one_cycle

        plan = plan_one_cycle(data, arch, epochs, lr, **cycle, **learner)
        render_result(plan, make_console(), as_json=as_json)
        return
    relaunch_if_asked(ctx, nproc)
    run_training(
        ctx, as_json=as_json, data=data, arch=arch, epochs=epochs, lr=lr, wd=wd, schedule="one_cycle",
        **cycle, **learner, monitor=monitor, patience=patience, save_best=save_best, resume=resume,
        init_from=init_from, deterministic=deterministic,
    )  # fmt: skip
