"""What the benchmarks share: result rows, medians, interleaved repetitions, child processes, the
machine's description and the table.

Every comparison is measured side by side in one run: the candidates take turns (their order
alternating from one round to the next), so a machine that gets busier or quieter mid-run slows
both alike, and a result is a median over rounds, never one timing.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# An installed learnkit runs from bytecode (pip compiles it at install, and Python caches it on
# first import): a benchmark started under PYTHONDONTWRITEBYTECODE=1 would time the compiler in
# every process it starts (~0.07 s of each CLI start-up here), not learnkit.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    """One line of the results table.

    Args:
        bench: the benchmark (``loop``, ``e2e``, ``startup``, ``memory``).
        case: what was measured, e.g. ``simple_cnn 32px``.
        metric: the unit of ``learnkit`` and ``baseline``, e.g. ``s/epoch``.
        learnkit, baseline: the two values (``baseline`` may be None when there is none).
        ratio: how they compare (learnkit / baseline, or a difference where the target is one).
        target: the target in words, e.g. ``<= 1.03``.
        ok: whether the target is met (None: no target).
        note: anything needed to read the row (spread, accuracy...).
    """

    bench: str
    case: str
    metric: str
    learnkit: float | None
    baseline: float | None
    ratio: float | None
    target: str = ""
    ok: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> float:
    """Relative spread: the interquartile range over the median (0.02 = 2 %)."""
    if len(values) < 4:
        return float("nan")
    q1, _, q3 = statistics.quantiles(values, n=4)
    return (q3 - q1) / statistics.median(values)


def interleave(candidates: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[Any]]:
    """Run each candidate once a round, ``rounds`` times, alternating their order; collect results."""
    names = list(candidates)
    results: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(candidates[name]())
    return results


def run_child(code: str, *args: str, timeout: float = 600, env: dict | None = None) -> dict:
    """Run ``code`` in a fresh interpreter (the repository on its path); it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def learnkit_exe() -> str:
    """The ``learnkit`` console script beside this interpreter."""
    exe = Path(sys.executable).with_name("learnkit")
    if not exe.exists():
        raise RuntimeError(f"no learnkit console script at {exe}: pip install -e . first")
    return str(exe)


def machine() -> dict[str, Any]:
    """The machine and software the numbers come from."""
    import torch

    cpu = platform.processor() or ""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")), cpu)
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "load_1min": round(load, 2),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if value != value:  # nan
            return "nan"
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned plain-text (and Markdown) table."""
    head = ["bench", "case", "metric", "learnkit", "baseline", "ratio", "target", "ok", "note"]
    cells = [
        [r.bench, r.case, r.metric, *map(_fmt, (r.learnkit, r.baseline, r.ratio, r.target, r.ok)), r.note]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells]
    return "\n".join(out)


def rows_as_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def log(message: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)
