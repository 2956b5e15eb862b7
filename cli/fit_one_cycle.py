"""``learnkit fit-one-cycle``: train an arch from the zoo with the 1cycle policy."""

from typing import Annotated

import typer

from learnkit.data.aug_config import DEFAULT_PRESET

from .options import (
    SCHEDULE,
    AccumOpt,
    ArchOpt,
    AugOpt,
    BsOpt,
    CacheOpt,
    ClassWeightsOpt,
    ClipOpt,
    CompileOpt,
    ConfigOpt,
    CutmixOpt,
    DataArg,
    DeterministicOpt,
    DeviceOpt,
    DivFactorOpt,
    EmaOpt,
    EpochsOpt,
    ExistOkOpt,
    FinalDivOpt,
    FlipOpt,
    FlipVertOpt,
    FreezeOpt,
    InitFromOpt,
    JsonOpt,
    LabelDelimOpt,
    LabelSmoothingOpt,
    LoggerOpt,
    LrOpt,
    MaxLightingOpt,
    MaxRotateOpt,
    MaxWarpOpt,
    MaxZoomOpt,
    MixupOpt,
    MomsOpt,
    MonitorOpt,
    NprocOpt,
    PathOpt,
    PatienceOpt,
    PctStartOpt,
    PrecisionOpt,
    PretrainedOpt,
    PrintConfigOpt,
    ResumeOpt,
    SaveBestOpt,
    SeedOpt,
    SizeOpt,
    ThreshOpt,
    ValidPctOpt,
    WdOpt,
    WorkersOpt,
)
from .render import make_console, render_result
from .training import build_config, train_command


def fit_one_cycle(
    ctx: typer.Context,
    data: DataArg = None,
    arch: ArchOpt = None,
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
    aug: AugOpt = DEFAULT_PRESET,
    flip: FlipOpt = None,
    flip_vert: FlipVertOpt = None,
    max_rotate: MaxRotateOpt = None,
    max_zoom: MaxZoomOpt = None,
    max_lighting: MaxLightingOpt = None,
    max_warp: MaxWarpOpt = None,
    label_smoothing: LabelSmoothingOpt = 0.0,
    mixup: MixupOpt = None,
    cutmix: CutmixOpt = None,
    class_weights: ClassWeightsOpt = None,
    label_delim: LabelDelimOpt = None,
    thresh: ThreshOpt = 0.5,
    clip: ClipOpt = None,
    accum: AccumOpt = 1,
    ema: EmaOpt = None,
    compile: CompileOpt = False,
    freeze: FreezeOpt = None,
    as_json: JsonOpt = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Plot the lr/momentum schedule; no training.", rich_help_panel=SCHEDULE
        ),
    ] = False,
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
    """Train ARCH on DATA with 1cycle; keeps PATH/models/last and best (Ctrl-C: saves, exit 130)."""
    if not dry_run:
        train_command(ctx, "fit-one-cycle")
        return
    from learnkit.jobs.config import lr_value
    from learnkit.jobs.lr_find import plan_one_cycle

    cfg = build_config(ctx, "fit-one-cycle")
    d, r, sch = cfg.data, cfg.runtime, cfg.schedule
    plan = plan_one_cycle(
        d.data, cfg.model.arch, sch.epochs, lr_value(sch.lr), **sch.cycle_kwargs(), bs=d.bs, size=d.size,
        seed=r.seed, path=cfg.checkpoint.path, workers=r.workers, device=r.device, valid_pct=d.valid_pct,
        precision=r.precision, cache=d.cache, pretrained=cfg.model.pretrained,
    )  # fmt: skip
    render_result(plan, make_console(), as_json=as_json)
