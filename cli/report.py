"""``learnkit report``: a run folder as one self-contained HTML page (``PATH/report.html``)."""

from typing import Annotated

import typer

from .options import BsOpt, DeviceOpt, JsonOpt
from .render import make_console, render_result
from .trust_size import TrustSizeOpt, apply_trust_size

RunArg = Annotated[str, typer.Argument(metavar="PATH", help="The run folder (the --path of the fit).")]
ReportModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="The checkpoint to describe (default: best, else last)."),
]
ReportDataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="DATA",
        help="Validation data for the confusion matrix and top losses (default: the run's config).",
    ),
]
OutOpt = Annotated[
    str | None, typer.Option("--out", metavar="FILE", help="Where to write (default: PATH/report.html).")
]


def report(
    path: RunArg,
    model: ReportModelOpt = None,
    data: ReportDataOpt = None,
    out: OutOpt = None,
    bs: BsOpt = 64,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
    trust_size: TrustSizeOpt = False,
) -> None:
    """Write PATH/report.html: config, epochs, curves, confusion matrix, per-class scores, top losses."""
    from learnkit.report import write_report

    apply_trust_size(trust_size)

    result = write_report(path, model=model, data=data, out=out, bs=bs, device=device)
    row = {
        "file": str(result.file),
        "model": result.model,
        "data": result.data,
        "images": len(result.plots),
        "sections": [k for k in result.plots],
        "notes": result.notes,
    }
    render_result(row, make_console(), as_json=as_json)
