"""``learnkit fit``: train an arch from the zoo at a constant learning rate."""

import typer

from .options import (
    ArchOpt,
    BsOpt,
    CacheOpt,
    DataArg,
    DeterministicOpt,
    DeviceOpt,
    EpochsOpt,
    InitFromOpt,
    JsonOpt,
    LrOpt,
    MonitorOpt,
    NprocOpt,
    PathOpt,
    PatienceOpt,
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
from .training import relaunch_if_asked, run_training


def fit(
    ctx: typer.Context,
    data: DataArg,
    arch: ArchOpt,
    epochs: EpochsOpt = 1,
    lr: LrOpt = "3e-3",
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
    monitor: MonitorOpt = None,
    patience: PatienceOpt = None,
    save_best: SaveBestOpt = True,
    resume: ResumeOpt = None,
    init_from: InitFromOpt = None,
    deterministic: DeterministicOpt = False,
    nproc: NprocOpt = None,
) -> None:
    """Train ARCH on DATA for EPOCHS epochs; saves PATH/models/last after every epoch.

    Ctrl-C stops at the next batch, saves last and exits 130; --resume continues from it.
    """
    relaunch_if_asked(ctx, nproc)
    run_training(
        ctx,
        as_json=as_json,
        data=data,
        arch=arch,
        epochs=epochs,
        lr=lr,
        wd=wd,
        bs=bs,
        size=size,
        seed=seed,
        path=path,
        workers=workers,
        device=device,
        valid_pct=valid_pct,
        precision=precision,
        cache=cache,
        pretrained=pretrained,
        monitor=monitor,
        patience=patience,
        save_best=save_best,
        resume=resume,
        init_from=init_from,
        deterministic=deterministic,
    )
