"""``learnkit fit``: train an arch from the zoo at a constant learning rate."""

import typer

from .context import global_options
from .options import (
    ArchOpt,
    BsOpt,
    DataArg,
    DeviceOpt,
    EpochsOpt,
    JsonOpt,
    LrOpt,
    PathOpt,
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
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    valid_pct: ValidPctOpt = None,
    precision: PrecisionOpt = "fp32",
    pretrained: PretrainedOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train ARCH on DATA for EPOCHS epochs; saves PATH/models/last after every epoch."""
    from learnkit import runner

    with make_reporter(global_options(ctx), as_json=as_json) as reporter:
        result = runner.train(
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
            precision=precision,
            pretrained=pretrained,
            reporter=reporter,
        )
    render_result(result, make_console(), as_json=as_json, skip=("history",))
