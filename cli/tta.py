"""``learnkit tta``: a saved model's loss and metrics on DATA, without and with test-time augmentation."""

from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.console import Console

from .options import (
    BsOpt,
    DataArg,
    DeviceOpt,
    JsonOpt,
    SeedOpt,
    ValidPctOpt,
    WorkersOpt,
)
from .render import make_console, print_json, print_note, render_result, render_rows
from .runs import RunModelOpt, RunPathOpt, locate
from .trust_size import TrustSizeOpt, apply_trust_size
from .validate import AllowChangedOpt

BetaOpt = Annotated[
    float, typer.Option("--beta", min=0.0, max=1.0, help="Weight of the plain prediction in the mix.")
]
ScaleOpt = Annotated[
    float, typer.Option("--tta-scale", "--scale", min=1.0, help="Zoom before the four corner crops.")
]
FlipOpt = Annotated[
    bool | None,
    typer.Option(
        "--tta-flip/--no-tta-flip",
        help="Also average the flipped crops (default: as trained, i.e. only if it trained with flips).",
        show_default=False,
    ),
]


def tta(
    data: DataArg,
    model: RunModelOpt,
    path: RunPathOpt = None,
    beta: BetaOpt = 0.4,
    scale: ScaleOpt = 1.35,
    flip: FlipOpt = None,
    bs: BsOpt = 64,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    valid_pct: ValidPctOpt = None,
    seed: SeedOpt = None,
    allow_changed_data: AllowChangedOpt = False,
    as_json: JsonOpt = False,
    trust_size: TrustSizeOpt = False,
) -> None:
    """Validate checkpoint MODEL on DATA without and with TTA (the fit's own split by default)."""
    from learnkit.jobs.runs import data_task
    from learnkit.jobs.tta import tta_scores

    apply_trust_size(trust_size)
    model, path = locate(model, path, data_task(data))

    result = tta_scores(
        data, model, path=path, beta=beta, scale=scale, bs=bs, workers=workers, device=device,
        valid_pct=valid_pct, seed=seed, flip=flip, allow_changed_data=allow_changed_data,
    )  # fmt: skip
    print_note(result)
    render_tta(result, make_console(), as_json=as_json)


def render_tta(result: Mapping[str, Any], console: Console, *, as_json: bool = False) -> None:
    """The plain and TTA figures side by side (one row per figure), then the run's settings."""
    if as_json:
        print_json(result, console)
        return
    plain, with_tta = result["plain"], result["tta"]
    rows = [{"metric": name, "plain": plain.get(name), "tta": with_tta.get(name)} for name in with_tta]
    render_rows(rows, console, columns=["metric", "plain", "tta"])
    settings = {k: result[k] for k in ("items", "beta", "scale", "flip", "model") if k in result}
    render_result(settings, console)
