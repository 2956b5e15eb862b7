"""``learnkit unet``: train a U-Net over a zoo encoder on segmentation data, with 1cycle."""

from typing import Annotated, Any, Literal

import typer

from learnkit.data.aug_config import DEFAULT_PRESET

from .options import (
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
from .training import train_command

# the job's measured defaults (learnkit.jobs.unet.DEFAULTS), repeated here so --help imports no torch
DEFAULT_LR, DEFAULT_BS, DEFAULT_SIZE, DEFAULT_EPOCHS = "1e-3", 8, 64, 3


def parse_y_range(text: Any) -> tuple[float, float] | None:
    """``LO,HI`` -> ``(lo, hi)`` with ``lo < hi``; None stays None."""
    if text is None or isinstance(text, tuple):
        return text
    parts = str(text).replace(":", ",").split(",")
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        raise typer.BadParameter(f"{str(text).strip()!r} is not two numbers such as 0,1") from None
    if not low < high:
        raise typer.BadParameter(f"{str(text).strip()!r}: LO must be below HI")
    return low, high


SegDataArg = Annotated[
    str | None,
    typer.Argument(
        metavar="DATA",
        help="Segmentation folder or sample:shapes-seg.",
        rich_help_panel="Data",
        show_default=False,
    ),
]


def unet(
    ctx: typer.Context,
    data: SegDataArg = None,
    arch: ArchOpt = None,
    epochs: EpochsOpt = DEFAULT_EPOCHS,
    lr: LrOpt = DEFAULT_LR,
    moms: MomsOpt = "0.95,0.85",
    pct_start: PctStartOpt = 0.3,
    div_factor: DivFactorOpt = 25.0,
    final_div: FinalDivOpt = None,
    wd: WdOpt = None,
    bs: BsOpt = DEFAULT_BS,
    size: SizeOpt = DEFAULT_SIZE,
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
    self_attention: Annotated[
        bool,
        typer.Option(
            "--self-attention", rich_help_panel="Model", help="A self-attention layer in the decoder."
        ),
    ] = False,
    blur: Annotated[
        bool,
        typer.Option("--blur", rich_help_panel="Model", help="Blur after each pixel-shuffle upsampling."),
    ] = False,
    blur_final: Annotated[
        bool,
        typer.Option(
            "--blur-final/--no-blur-final",
            rich_help_panel="Model",
            help="With --blur, blur the last upsamplings too.",
        ),
    ] = True,
    bottle: Annotated[
        bool, typer.Option("--bottle", rich_help_panel="Model", help="A bottleneck in the last res block.")
    ] = False,
    last_cross: Annotated[
        bool,
        typer.Option(
            "--last-cross/--no-last-cross",
            rich_help_panel="Model",
            help="Feed the input image to the last res block.",
        ),
    ] = True,
    norm_type: Annotated[
        Literal["none", "batch", "weight"],
        typer.Option("--norm-type", rich_help_panel="Model", help="Decoder conv norm."),
    ] = "none",
    y_range: Annotated[
        Any,
        typer.Option(
            "--y-range",
            rich_help_panel="Model",
            parser=parse_y_range,
            metavar="LO,HI",
            help="Squeeze the outputs into (LO, HI).",
        ),
    ] = None,
) -> None:
    """Train a U-Net over ARCH on DATA with 1cycle; keeps PATH/models/last and best."""
    train_command(ctx, "unet")
