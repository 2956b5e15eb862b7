"""``learnkit export``: a checkpoint as ONNX or torch.export (``.pt2``), checked against PyTorch."""

import sys
from typing import Annotated

import typer

from .options import JsonOpt, ModelOpt, PathOpt
from .render import make_console, render_result
from .trust_size import TrustSizeOpt, apply_trust_size

FormatOpt = Annotated[
    str,
    typer.Option(
        "--format",
        metavar="onnx|pt2",
        help="onnx (torch.onnx.export; needs learnkit[export]) or pt2 (torch.export).",
        autocompletion=lambda: ["onnx", "pt2"],
    ),
]
OutOpt = Annotated[
    str | None,
    typer.Option(
        "--out", metavar="FILE", help="Where to write (default: beside the checkpoint, NAME.FORMAT)."
    ),
]


def export(
    model: ModelOpt,
    fmt: FormatOpt = "onnx",
    path: PathOpt = ".",
    out: OutOpt = None,
    as_json: JsonOpt = False,
    trust_size: TrustSizeOpt = False,
) -> None:
    """Export checkpoint MODEL: 0..1 RGB images in (any batch), probabilities out; checked after writing."""
    from learnkit.export import export_checkpoint

    apply_trust_size(trust_size)

    result = export_checkpoint(model, path=path, fmt=fmt, out=out).to_dict()
    print(
        f"max |exported - pytorch| {result['max_diff']:.2e} on a batch of {result['checked_batch']}",
        file=sys.stderr,
    )
    render_result(result, make_console(), as_json=as_json, skip=("metadata", "classes"))
