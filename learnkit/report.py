"""A run's one-page report: ``<run>/report.html``, self-contained (every image inline as a data URI).

:func:`write_report` gathers what a run folder holds and renders it with
:mod:`learnkit.report_html`:

- the config (``config.yaml``), the per-epoch table (``history.csv``);
- plots of the losses (smoothed per step, validation per epoch), the learning rate and momentum
  per step (from the optimizer file's Recorder state), and each metric per epoch;
- with the validation data (``data``, else the data the run's config names): the confusion
  matrix, per-class precision/recall/F1 and the top losses;
- the model summary (layers, shapes, parameters) and the checkpoint's facts.

A part the folder cannot give (no optimizer file, no data) is left out with a line saying why.

Example:
    >>> report = write_report("run1")  # doctest: +SKIP
    >>> report.file  # doctest: +SKIP
    PosixPath('run1/report.html')
"""

from __future__ import annotations

import base64
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from learnkit.atomic import write_atomically
from learnkit.errors import CheckpointError, DataError, LearnkitError, UsageError

REPORT_NAME = "report.html"
NOT_METRICS = ("epoch", "train_loss", "valid_loss", "time", "lr", "mom")  # history.csv's other columns


@dataclass
class Report:
    """What goes on the page (plain data); :func:`learnkit.report_html.render` turns it to HTML."""

    run: Path
    model: str | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    config_text: str | None = None
    history: list[dict[str, str]] = field(default_factory=list)
    plots: dict[str, str] = field(default_factory=dict)  # title -> data URI
    per_class: list[dict[str, Any]] = field(default_factory=list)
    summary_text: str | None = None
    notes: list[str] = field(default_factory=list)
    data: str | None = None
    file: Path | None = None


def write_report(
    run: str | Path,
    model: str | None = None,
    data: str | None = None,
    *,
    out: str | Path | None = None,
    bs: int = 64,
    device: str = "cpu",
    top_k: int = 9,
) -> Report:
    """Gather the run folder ``run`` into one HTML page, ``<run>/report.html`` (or ``out``).

    Args:
        run: the run folder (``--path`` of the fit).
        model: the checkpoint to describe (default ``best`` when it exists, else ``last``).
        data: the validation data for the confusion matrix, per-class scores and top losses
            (default: the ``data`` of the run's ``config.yaml``, when it names one).
        out: the page's file.
        bs, device: for the validation pass.
        top_k: how many top losses to show.

    Raises:
        DataError: ``run`` is not a folder, or holds neither a history nor a checkpoint.
    """
    from learnkit.report_html import render

    run = Path(run)
    if not run.is_dir():
        raise DataError(f"no run folder {run}")
    report = Report(run=run, model=model or _default_model(run))
    config = _read_config(run, report)
    report.history = _read_history(run)
    if not report.history and report.model is None:
        raise DataError(f"{run} holds neither history.csv nor a checkpoint under models/: not a run folder")
    _history_plots(report)
    split = _config_split(config) if data is None else {}
    if report.model is not None:
        data = data or _config_data(config)
        _checkpoint_parts(report, data, bs=bs, device=device, top_k=top_k, split=split)
    else:
        report.notes.append("no checkpoint under models/: no model summary or interpretation")
    report.file = Path(out) if out is not None else run / REPORT_NAME
    _write_text(report.file, render(report))
    return report


# --- what the folder holds ---
def _default_model(run: Path) -> str | None:
    for name in ("best", "last"):
        if (run / "models" / f"{name}.safetensors").is_file():
            return name
    found = sorted(
        p.name.removesuffix(".safetensors")
        for p in (run / "models").glob("*.safetensors")
        if not p.name.endswith(".opt.safetensors")
    )
    return found[0] if found else None


def _read_config(run: Path, report: Report) -> dict[str, Any]:
    file = run / "config.yaml"
    if not file.is_file():
        report.notes.append("no config.yaml in the run folder")
        return {}
    from learnkit.safe_yaml import MAX_CONFIG_BYTES, load_yaml

    with open(file, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    report.config_text = raw[:MAX_CONFIG_BYTES].decode("utf-8", errors="replace")
    if len(raw) > MAX_CONFIG_BYTES:
        report.notes.append(f"config.yaml is larger than {MAX_CONFIG_BYTES} bytes: not read")
        return {}
    try:
        loaded = load_yaml(report.config_text, file, "config.yaml")
    except UsageError as exc:  # the page still shows the text
        report.notes.append(str(exc))
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _config_data(config: dict[str, Any]) -> str | None:
    """The data a run's config names: ``data: DIR`` or ``data: {source|path|data: DIR}``."""
    value = config.get("data")
    if isinstance(value, dict):
        value = next(
            (value[k] for k in ("source", "path", "data", "root") if isinstance(value.get(k), str)), None
        )
    return value if isinstance(value, str) and value else None


def _config_split(config: dict[str, Any]) -> dict[str, Any]:
    """How the run's config made its validation set (``valid_pct``, ``seed``), to make it again."""
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    runtime = config.get("runtime") if isinstance(config.get("runtime"), dict) else {}
    split = {"valid_pct": data.get("valid_pct"), "seed": runtime.get("seed", config.get("seed"))}
    return {k: v for k, v in split.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def _read_history(run: Path) -> list[dict[str, str]]:
    file = run / "history.csv"
    if not file.is_file():
        return []
    with open(file, newline="") as f:
        return [row for row in csv.DictReader(f) if row]


def _floats(rows: list[dict[str, str]], key: str) -> list[float]:
    out = []
    for row in rows:
        try:
            out.append(float(row.get(key) or "nan"))
        except ValueError:
            out.append(math.nan)
    return out


# --- plots ---
def figure_uri(fig: Any) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def file_uri(path: str | Path) -> str:
    """A PNG file as a data URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _history_plots(report: Report) -> None:
    from learnkit.plots import new_figure

    rows = report.history
    recorder = _recorder_state(report)
    epochs = _floats(rows, "epoch")
    if recorder.get("losses") or rows:
        fig, ax = new_figure(figsize=(6, 3.4))
        losses = recorder.get("losses") or []
        batches = recorder.get("nb_batches") or []
        if losses:
            ax.plot(range(len(losses)), losses, label="train (smoothed, per step)")
        ends = [sum(batches[: i + 1]) - 1 for i in range(len(batches))] if losses and batches else epochs
        valid = _floats(rows, "valid_loss")
        if valid and len(ends) >= len(valid):
            ax.plot(ends[: len(valid)], valid, "o-", label="valid (per epoch)")
        if not losses and rows:
            ax.plot(epochs, _floats(rows, "train_loss"), "o-", label="train (per epoch)")
        best = _best_epoch(report)
        if best is not None and valid and len(ends) >= len(valid) and 0 <= best < len(valid):
            ax.plot(
                [ends[best]], [valid[best]], "*", color="tab:red", markersize=14, label=f"best (epoch {best})"
            )
        ax.set_xlabel("step" if losses else "epoch")
        from learnkit.recorder import spiky

        if spiky([*losses, *valid]):
            ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)" if ax.get_yscale() == "log" else "loss")
        ax.legend()
        ax.set_title("Losses")
        report.plots["Losses"] = figure_uri(fig)
    if recorder.get("lrs"):
        fig, axes = new_figure(1, 2, figsize=(9, 3))
        axes[0].plot(recorder["lrs"])
        axes[0].set_title("Learning rate (last layer group)")
        axes[0].set_xlabel("step")
        moms = [m for m in recorder.get("moms") or [] if m is not None]
        if moms:
            axes[1].plot(moms)
        axes[1].set_title("Momentum")
        axes[1].set_xlabel("step")
        report.plots["Learning rate and momentum"] = figure_uri(fig)
    elif report.model is not None:
        report.notes.append("no optimizer file beside the checkpoint: no per-step loss/lr/momentum plots")
    metrics = [k for k in (rows[0] if rows else {}) if k not in NOT_METRICS]
    if metrics:
        fig, ax = new_figure(figsize=(6, 3.4))
        for name in metrics:
            ax.plot(epochs, _floats(rows, name), "o-", label=name)
        ax.set_xlabel("epoch")
        ax.legend()
        ax.set_title("Metrics")
        report.plots["Metrics"] = figure_uri(fig)


def _best_epoch(report: Report) -> int | None:
    """The epoch of the best checkpoint (its metadata), when the run has one."""
    if report.model is None:
        return None
    from learnkit.checkpoint import read_header, resolve_checkpoint

    try:
        _, meta = read_header(resolve_checkpoint("best", report.run))
    except (CheckpointError, OSError):
        return None
    best = meta.get("best")
    return best.get("epoch") if isinstance(best, dict) and isinstance(best.get("epoch"), int) else None


def _recorder_state(report: Report) -> dict[str, Any]:
    if report.model is None:
        return {}
    from learnkit.checkpoint import OPT_FORMAT, optimizer_path, read_safetensors, resolve_checkpoint

    opt = optimizer_path(resolve_checkpoint(report.model, report.run))
    if not opt.is_file():
        return {}
    try:
        _, meta = read_safetensors(opt, expect_format=OPT_FORMAT, check_finite=False)
    except CheckpointError as exc:
        report.notes.append(f"optimizer file unreadable: {exc}")
        return {}
    state = (meta.get("callbacks") or {}).get("recorder")
    return state if isinstance(state, dict) else {}


# --- the checkpoint: facts, summary, interpretation ---
def _checkpoint_parts(
    report: Report, data: str | None, *, bs: int, device: str, top_k: int, split: dict[str, Any]
) -> None:
    from learnkit.jobs import info
    from learnkit.jobs.evaluate import read_model_metadata

    file, meta = read_model_metadata(report.model, report.run)
    spec = meta.get("model_spec") or {}
    report.checkpoint = {
        "file": str(file),
        "arch": spec.get("arch"),
        "task": meta.get("task") or "classification",
        "size": meta.get("size"),
        "classes": meta.get("classes"),
        "best": meta.get("best"),
        "learnkit_version": meta.get("learnkit_version"),
    }
    try:
        report.summary_text = info.summary(model=report.model, path=report.run)["text"]
    except LearnkitError as exc:
        report.notes.append(f"no model summary: {exc}")
    if data is None:
        report.notes.append(
            "no validation data named (pass DATA, or a run with config.yaml): no confusion matrix"
        )
        return
    report.data = data
    try:
        _interpretation(report, data, bs=bs, device=device, top_k=top_k, split=split)
    except (DataError, UsageError, CheckpointError) as exc:
        report.notes.append(f"no interpretation on {data}: {exc}")


def _interpretation(
    report: Report, data: str, *, bs: int, device: str, top_k: int, split: dict[str, Any]
) -> None:
    from learnkit.jobs.evaluate import checkpoint_learner

    learn = checkpoint_learner(
        data, report.model, path=report.run, bs=bs, device=device, metrics=(),
        allow_changed_data=True, **split,
    )  # fmt: skip
    if learn.data.changed_since_fit:
        report.notes.append(
            f"the data changed since the fit: {'; '.join(learn.data.changed_since_fit)} "
            "(the confusion matrix is on today's data)"
        )
    interp = learn.interpret()
    classes = list(interp.classes)
    report.plots["Confusion matrix"] = file_uri(interp.plot_confusion_matrix())
    report.per_class = per_class_scores(interp.confusion_matrix().tolist(), classes)
    if len(interp.losses):
        report.plots["Top losses"] = file_uri(interp.plot_top_losses(min(top_k, len(interp.losses))))


def per_class_scores(cm: list[list[int]], classes: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix ``cm[actual][predicted]``.

    Example:
        >>> per_class_scores([[3, 1], [0, 2]], ["a", "b"])[1]["precision"]
        0.6666666666666666
    """
    rows = []
    for i, name in enumerate(classes):
        tp = cm[i][i]
        predicted = sum(row[i] for row in cm)
        actual = sum(cm[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": actual})
    return rows


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    write_atomically(path, lambda f: f.write(data))  # a fresh temporary name: never a planted link
