"""``learnkit fit``: train an arch from the zoo at a constant learning rate."""

import typer

from .options import (
    ArchOpt,
    BsOpt,
    CacheOpt,
    ConfigOpt,
    DataArg,
    DeterministicOpt,
    DeviceOpt,
    EpochsOpt,
    ExistOkOpt,
    InitFromOpt,
    JsonOpt,
    LoggerOpt,
    LrOpt,
    MonitorOpt,
    NprocOpt,
    PathOpt,
    PatienceOpt,
    PrecisionOpt,
    PretrainedOpt,
    PrintConfigOpt,
    ResumeOpt,
    SaveBestOpt,
    SeedOpt,
    SizeOpt,
    ValidPctOpt,
    WdOpt,
    WorkersOpt,
)
from .training import train_command


def fit(
    ctx: typer.Context,
    data: DataArg = None,
    arch: ArchOpt = None,
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
    monitor: MonitorOpt = "valid_loss",
    patience: PatienceOpt = None,
    loggers: LoggerOpt = None,
    save_best: SaveBestOpt = True,
    resume: ResumeOpt = None,
    init_from: InitFromOpt = None,
    exist_ok: ExistOkOpt = False,
    deterministic: DeterministicOpt = False,
    nproc: NprocOpt = None,
    config: ConfigOpt = None,
    print_config: PrintConfigOpt = False,
) -> None:
    """Train ARCH on DATA for EPOCHS epochs; saves PATH/models/last after every epoch, best on
    improvement, PATH/config.yaml and PATH/history.csv.

    Ctrl-C stops at the next batch, saves last and exits 130; --resume continues from it.
    """
    train_command(ctx, "fit")
