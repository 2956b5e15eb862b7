"""``learnkit unet``: train a U-Net over a zoo encoder on segmentation data, with 1cycle."""

import sys
from typing import Annotated, Any, Literal

import typer

from .context import global_options
from .options import (
    ArchOpt,
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
    WdOpt,
    WorkersOpt,
)
from .progress import make_reporter
from .render import make_console, render_result, render_rows

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
    str,
    typer.Argument(
        metavar="DATA",
        help="A segmentation folder (images/, masks/ with the same names, codes.txt), or sample:shapes-seg.",
    ),
]


def unet(
    ctx: typer.Context,
    data: SegDataArg,
    arch: ArchOpt,
    epochs: EpochsOpt = DEFAULT_EPOCHS,
    lr: LrOpt = DEFAULT_LR,
    moms: MomsOpt = "0.95,0.85",
    pct_start: PctStartOpt = 0.3,
    div_factor: DivFactorOpt = 25.0,
    final_div: FinalDivOpt = None,
    wd: WdOpt = None,
    bs: Annotated[int, typer.Option("--bs", min=1, help="Batch size.")] = DEFAULT_BS,
    size: Annotated[
        int, typer.Option("--size", min=8, help="Images and masks are resized to SIZE x SIZE.")
    ] = DEFAULT_SIZE,
    seed: SeedOpt = None,
    path: PathOpt = ".",
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    valid_pct: Annotated[
        float | None,
        typer.Option(
            "--valid-pct", min=0.0, max=1.0, help="Share of the images held out for validation (0.2)."
        ),
    ] = None,
    precision: PrecisionOpt = "fp32",
    pretrained: PretrainedOpt = None,
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
    monitor: Annotated[
        str | None,
        typer.Option(
            "--monitor", help="Also keep PATH/models/best: dice, iou, pixel_accuracy or valid_loss."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a U-Net over ARCH on DATA for one cycle of EPOCHS epochs; reports dice and IoU per epoch.

    Saves PATH/models/last after every epoch (and PATH/models/best with --monitor).
    """
    from learnkit.jobs.unet import train_unet

    if valid_pct is not None and not 0 < valid_pct < 1:
        raise typer.BadParameter("must be between 0 and 1", param_hint="--valid-pct")
    reporter = make_reporter(global_options(ctx), as_json=as_json)
    result = train_unet(
        data,
        arch,
        epochs,
        lr,
        wd=wd,
        bs=bs,
        size=size,
        seed=seed,
        path=path,
        workers=workers,
        device=device,
        valid_pct=valid_pct,
        pretrained=pretrained,
        precision=precision,
        blur=blur,
        blur_final=blur_final,
        self_attention=self_attention,
        bottle=bottle,
        last_cross=last_cross,
        norm_type=None if norm_type == "none" else norm_type,
        y_range=y_range,
        monitor=monitor,
        reporter=reporter,
        moms=moms,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div=final_div,
    )
    console = make_console()
    for plot in result.get("plots") or []:
        print(f"plot: {plot}", file=sys.stderr, flush=True)
    if as_json:
        render_result(result, console, as_json=True)
        return
    per_class = [
        {"class": name, "dice": result["dice_per_class"].get(name), "iou": result["iou_per_class"].get(name)}
        for name in result["classes"]
    ]
    render_rows(per_class, console, columns=["class", "dice", "iou"])
    render_result(result, console, skip=("history", "dice_per_class", "iou_per_class", "classes", "plots"))
