"""``learnkit unet``: train a U-Net over a zoo encoder on segmentation data, with 1cycle."""

from typing import Annotated, Any, Literal

import typer

from .options import (
    ArchOpt,
    BsOpt,
    CacheOpt,
    ConfigOpt,
    DeterministicOpt,
    DeviceOpt,
    DivFactorOpt,
    EpochsOpt,
    ExistOkOpt,
    FinalDivOpt,
    InitFromOpt,
    JsonOpt,
    LoggerOpt,
    LrOpt,
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
        help="A segmentation folder (images/, masks/ with the same names, codes.txt), or sample:shapes-seg.",
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
        bool, typer.Option("--self-attention", help="A self-attention layer in the decoder.")
    ] = False,
    blur: Annotated[bool, typer.Option("--blur", help="Blur after each pixel-shuffle upsampling.")] = False,
    blur_final: Annotated[
        bool, typer.Option("--blur-final/--no-blur-final", help="With --blur, blur the last upsamplings too.")
    ] = True,
    bottle: Annotated[
        bool, typer.Option("--bottle", help="A bottleneck in the res block after the last cross connection.")
    ] = False,
    last_cross: Annotated[
        bool,
        typer.Option("--last-cross/--no-last-cross", help="Feed the input image to the last res block."),
    ] = True,
    norm_type: Annotated[
        Literal["none", "batch", "weight"],
        typer.Option("--norm-type", help="Normalisation of the decoder's convs."),
    ] = "none",
    y_range: Annotated[
        Any,
        typer.Option(
            "--y-range", parser=parse_y_range, metavar="LO,HI", help="Squeeze the outputs into (LO, HI)."
        ),
    ] = None,
) -> None:
    """Train a U-Net over ARCH on DATA for one cycle of EPOCHS epochs; reports dice and IoU per epoch.

    Saves PATH/models/last after every epoch, best on improvement (valid_loss, or --monitor dice,
    iou, pixel_accuracy), PATH/config.yaml and PATH/history.csv; --resume continues a run.
    """
    train_command(ctx, "unet")
