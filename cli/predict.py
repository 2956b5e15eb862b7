"""``learnkit predict``: a saved model's predictions on image files, one row per image.

Rows go to stdout as they are computed with ``--json`` (JSON Lines) and ``--csv``; the table (a
terminal) or aligned text (a pipe) needs every row first. An unreadable image gets its own row
(with ``error``) and one ``warning:`` line on stderr; the run goes on and exits 3 at the end.
"""

import csv
import io
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console

from learnkit.errors import DataError, UsageError

from .context import global_options
from .options import BsOpt, DeviceOpt, JsonOpt, ModelOpt, PathOpt
from .progress import interactive, track_rows
from .render import escape_controls, format_value, make_console, print_json, render_rows
from .trust_size import TrustSizeOpt, apply_trust_size

ItemsArg = Annotated[
    list[str],
    typer.Argument(
        metavar="ITEM",
        help="Image files, folders (searched at any depth), glob patterns, or - to read paths from stdin.",
        show_default=False,
    ),
]
NullOpt = Annotated[
    bool,
    typer.Option("--null", "-0", help="With -: paths on stdin end with NUL, not newline (find -print0)."),
]
TopkOpt = Annotated[int, typer.Option("--topk", min=1, help="Also give the K most likely labels.")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV (a header, then one row per image).")]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Average with 8 zoomed, cropped and flipped versions.")]
OutOpt = Annotated[
    str | None,
    typer.Option(
        "--out", metavar="DIR", help="Segmentation: write the masks here (default PATH/predictions)."
    ),
]
OverlayOpt = Annotated[
    bool, typer.Option("--overlay", help="Segmentation: also write each picture with its mask in colour.")
]


def predict(
    ctx: typer.Context,
    items: ItemsArg,
    model: ModelOpt,
    path: PathOpt = ".",
    topk: TopkOpt = 1,
    as_json: JsonOpt = False,
    as_csv: CsvOpt = False,
    bs: BsOpt = 64,
    tta: TtaOpt = False,
    device: DeviceOpt = "auto",
    out: OutOpt = None,
    overlay: OverlayOpt = False,
    null: NullOpt = False,
    trust_size: TrustSizeOpt = False,
) -> None:
    """Predict ITEM... with checkpoint MODEL: label and probability per image (segmentation: a mask)."""
    from learnkit.jobs.predict import predict_files

    apply_trust_size(trust_size)

    if as_json and as_csv:
        raise UsageError("--json and --csv: choose one")
    run = predict_files(
        items, model, path=path, bs=bs, topk=topk, tta=tta, device=device, out=out, overlay=overlay, null=null
    )
    fmt = "json" if as_json else "csv" if as_csv else "text"
    stdout = make_console()
    rows = track_rows(run.rows, _bar_console(ctx, stdout, streaming=fmt != "text"))
    total, failed = render_predictions(rows, stdout, fmt, run.task, run.topk)
    if failed:
        raise DataError(f"{failed} of {total} images could not be read")


def _bar_console(ctx: typer.Context, stdout: Console, *, streaming: bool) -> Console | None:
    """The stderr console for predict's live bar, or ``None``: none with --quiet, off a terminal,
    under CI, or when rows stream to the same terminal (they show the progress themselves)."""
    stderr = make_console(stderr=True)
    if global_options(ctx).quiet or not interactive(stderr) or (streaming and stdout.is_terminal):
        return None
    return stderr


def render_predictions(
    rows: Iterable[Mapping[str, Any]],
    console: Console,
    fmt: str = "text",
    task: str = "classification",
    topk: int = 1,
    warn: Callable[[str], None] | None = None,
) -> tuple[int, int]:
    """Print prediction rows as ``json`` (JSON Lines), ``csv`` or ``text``; ``(rows, error rows)``.

    ``json`` and ``csv`` print each row as it comes. Each error row also calls ``warn(message)``
    (default: a ``warning:`` line on stderr).
    """
    warn = warn or _warn
    columns = csv_columns(task, topk)
    kept: list[Mapping[str, Any]] = []
    total = failed = 0
    if fmt == "csv":
        _write_raw(_csv_line(columns), console)
    for row in rows:
        total += 1
        if row.get("error") is not None:
            failed += 1
            warn(row["error"])
        if fmt == "json":
            print_json(row, console)
        elif fmt == "csv":
            _write_raw(_csv_line(csv_cells(row, columns)), console)
        else:
            kept.append(row)
    if fmt == "text":
        render_rows(
            [text_cells(row, task, topk) for row in kept], console, columns=_text_columns(kept, task, topk)
        )
    return total, failed


def csv_columns(task: str, topk: int = 1) -> list[str]:
    """The CSV header: ``path``, the prediction's fields (``label_2``, ``probability_2``... for the
    other top-k labels; ``mask``, ``overlay`` for segmentation), then ``error``."""
    if task == "segmentation":
        return ["path", "mask", "overlay", "error"]
    extra = [f"{name}_{i}" for i in range(2, topk + 1) for name in ("label", "probability")]
    labels = ["labels"] if task == "multi-label" else []
    return ["path", *labels, "label", "probability", *extra, "error"]


def csv_cells(row: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    """One row's CSV cells for ``columns`` (empty where the row has no value)."""
    flat = dict(row)
    if row.get("labels") is not None:  # multi-label: the chosen classes, space-separated
        flat["labels"] = " ".join(p["label"] for p in row["labels"])
    for i, pair in enumerate(row.get("topk") or [], start=1):
        if i > 1:
            flat[f"label_{i}"], flat[f"probability_{i}"] = pair["label"], pair["probability"]
    return ["" if flat.get(name) is None else flat[name] for name in columns]


def text_cells(row: Mapping[str, Any], task: str, topk: int = 1) -> dict[str, Any]:
    """One row as the table shows it: the top-k as ``label p, ...``, mask coverage as percentages."""
    cells: dict[str, Any] = {"path": row["path"]}
    if task == "segmentation":
        cells.update(mask=row.get("mask"), overlay=row.get("overlay"))
        pixels = row.get("pixels") or {}
        cells["pixels"] = ", ".join(f"{k} {v:.1%}" for k, v in sorted(pixels.items(), key=lambda kv: -kv[1]))
    else:
        if task == "multi-label":
            cells["labels"] = ", ".join(
                f"{p['label']} {format_value(p['probability'])}" for p in row.get("labels") or []
            )
        cells.update(label=row.get("label"), probability=row.get("probability"))
        if topk > 1:
            cells["topk"] = ", ".join(
                f"{p['label']} {format_value(p['probability'])}" for p in row.get("topk", [])
            )
    cells["error"] = row.get("error")
    return cells


def _text_columns(rows: Sequence[Mapping[str, Any]], task: str, topk: int) -> list[str]:
    if task == "segmentation":
        columns = ["path", "mask", *(["overlay"] if any(r.get("overlay") for r in rows) else []), "pixels"]
    else:
        labels = ["labels"] if task == "multi-label" else []
        columns = ["path", *labels, "label", "probability", *(["topk"] if topk > 1 else [])]
    return columns + (["error"] if any(r.get("error") for r in rows) else [])


# characters that end a line for some reader (str.splitlines): a cell holding one is quoted
_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def _csv_line(cells: Sequence[Any]) -> str:
    """One CSV row, every cell kept byte for byte (a cell with a line break of any kind is quoted)."""
    buffer = io.StringIO()
    breaks = any(isinstance(c, str) and not _LINE_BREAKS.isdisjoint(c) for c in cells)
    quoting = csv.QUOTE_ALL if breaks else csv.QUOTE_MINIMAL
    csv.writer(buffer, lineterminator="\n", quoting=quoting).writerow(cells)
    return buffer.getvalue().removesuffix("\n")


def _write_raw(line: str, console: Console) -> None:
    """``line`` to the console's file as it is (rich would strip ``\\r`` and expand tabs); on a
    terminal, control characters are shown escaped instead."""
    text = escape_controls(line) if console.is_terminal else line
    console.file.write(text + "\n")
    console.file.flush()


def _warn(message: str) -> None:
    line = escape_controls(" ".join(str(message).split()))
    print(f"warning: {line}", file=sys.stderr, flush=True)
