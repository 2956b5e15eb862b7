"""``learnkit validate``: a saved model's loss and metrics on DATA's validation set."""

import sys
from typing import Annotated

import typer

from .options import (
    BsOpt,
    DataArg,
    DeviceOpt,
    JsonOpt,
    SeedOpt,
    ValidPctOpt,
    WorkersOpt,
)
from .render import make_console, print_note, render_result
from .runs import RunModelOpt, RunPathOpt, locate
from .trust_size import TrustSizeOpt, apply_trust_size

AllowChangedOpt = Annotated[
    bool,
    typer.Option(
        "--allow-changed-data",
        help="Go on (with a warning) when DATA changed since the fit; by default that is exit 3.",
    ),
]
PlotsOpt = Annotated[
    bool,
    typer.Option("--plots", help="Also save the confusion matrix and the top losses (PATH/plots/*.png)."),
]


def validate(
    data: DataArg,
    model: RunModelOpt,
    path: RunPathOpt = None,
    bs: BsOpt = 64,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    valid_pct: ValidPctOpt = None,
    seed: SeedOpt = None,
    plots: PlotsOpt = False,
    allow_changed_data: AllowChangedOpt = False,
    as_json: JsonOpt = False,
    trust_size: TrustSizeOpt = False,
) -> None:
    """Validate checkpoint MODEL on DATA: loss and metrics, on the fit's own split by default."""
    from learnkit.jobs import evaluate
    from learnkit.jobs.runs import data_task

    apply_trust_size(trust_size)
    model, path = locate(model, path, data_task(data))
    result = evaluate.validate(
        data,
        model,
        path=path,
        bs=bs,
        workers=workers,
        device=device,
        valid_pct=valid_pct,
        seed=seed,
        plots=plots,
        allow_changed_data=allow_changed_data,
    )
    print_note(result)
    for plot in result.get("plots") or []:
        print(f"plot: {plot}", file=sys.stderr, flush=True)
    render_result(result, make_console(), as_json=as_json, skip=() if as_json else ("plots",))
