"""The HTML of a run report (:mod:`learnkit.report`): one page, inline CSS, no script, no links out."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from learnkit.report import Report

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { padding: 3px 10px; text-align: right; }
th { background: #f3f3f3; } tr:nth-child(even) td { background: #fafafa; }
td.l, th.l { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; vertical-align: top; }
figure img { max-width: 100%; border: 1px solid #eee; } figcaption { color: #666; font-size: 0.9em; }
.note { color: #8a5a00; } .muted { color: #777; }
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _number(number: float) -> str:
    """4 decimals, or scientific notation for a small value (an lr of 3e-05 is not 0.0000)."""
    if number != 0 and abs(number) < 1e-3:
        return f"{number:.3e}"
    return f"{number:.4f}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    text = str(value)
    return _esc(_number(number) if "." in text or "e" in text.lower() else text)


def best_text(best: Any) -> str | None:
    """What made the checkpoint best, in words: ``epoch 3, valid_loss 0.0842``."""
    if not isinstance(best, dict):
        return None if best is None else str(best)
    value = best.get("value")
    shown = _number(value) if isinstance(value, int | float) else value
    return f"epoch {best.get('epoch')}, {best.get('monitor')} {shown}"


def _table(rows: list[dict[str, Any]], columns: list[str], left: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="{"l" if c in left else ""}">{_esc(c)}</th>' for c in columns)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if c in left else ""}">{_cell(r.get(c))}</td>' for c in columns)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f'<section id="{anchor}"><h2>{_esc(title)}</h2>{body}</section>'


def _figure(title: str, uri: str) -> str:
    return f'<figure><img src="{uri}" alt="{_esc(title)}"><figcaption>{_esc(title)}</figcaption></figure>'


def render(report: Report) -> str:
    """The whole page for ``report``."""
    name = report.run.resolve().name or str(report.run)  # "." is the folder's own name
    parts = [f"<h1>learnkit run report: {_esc(name)}</h1>"]
    ck = report.checkpoint
    facts = {
        "run folder": str(report.run),
        "checkpoint": ck.get("file"),
        "arch": ck.get("arch"),
        "task": ck.get("task"),
        "input size": ck.get("size"),
        "classes": ", ".join(map(str, ck.get("classes") or [])) or None,
        "best": best_text(ck.get("best")),
        "validation data": report.data,
        "learnkit": ck.get("learnkit_version"),
    }
    rows = [{"": k, "value": v} for k, v in facts.items() if v is not None]
    parts.append(_section("Run", _table(rows, ["", "value"], left=("", "value"))))
    if report.history:
        columns = list(report.history[0])
        parts.append(_section("Epochs", _table(report.history, columns)))
    curves = [t for t in ("Losses", "Learning rate and momentum", "Metrics") if t in report.plots]
    if curves:
        parts.append(_section("Training curves", "".join(_figure(t, report.plots[t]) for t in curves)))
    if "Confusion matrix" in report.plots or report.per_class:
        body = (
            _figure("Confusion matrix", report.plots["Confusion matrix"])
            if "Confusion matrix" in report.plots
            else ""
        )
        if report.per_class:
            body += "<h3>Per class</h3>" + _table(
                report.per_class, ["class", "precision", "recall", "f1", "support"], left=("class",)
            )
        parts.append(_section("Validation", body))
    if "Top losses" in report.plots:
        parts.append(_section("Top losses", _figure("Top losses", report.plots["Top losses"])))
    if report.summary_text:
        parts.append(_section("Model summary", f"<pre>{_esc(report.summary_text)}</pre>"))
    if report.config_text:
        parts.append(_section("Config", f"<pre>{_esc(report.config_text)}</pre>"))
    if report.notes:
        notes = "".join(f'<li class="note">{_esc(n)}</li>' for n in report.notes)
        parts.append(_section("Not shown", f"<ul>{notes}</ul>"))
    title = f"learnkit report: {_esc(name)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(parts)
        + '\n<p class="muted">Written by learnkit report; every image is inline.</p>\n</body></html>\n'
    )
