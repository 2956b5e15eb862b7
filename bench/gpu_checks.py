"""The pass/fail part of the GPU script: the ``gpu`` tests, training in each precision, and an
interrupted run resumed to the same weights. Each function returns result rows (``ok`` False on a
failure); the runs go through the installed ``learnkit`` command, as a user runs them.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, learnkit_exe, log


def _env() -> dict[str, str]:
    """Plain progress lines (one per epoch), no colour."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return env | {"CI": "1", "COLUMNS": "200"}


def gpu_tests(smoke: bool, timeout: float = 240) -> list[Row]:
    """``pytest -m gpu``: every test passes (on a CPU-only machine, every one is skipped)."""
    log("gpu: pytest -m gpu ...")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-rfEs", "tests"],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=_env(),
    )  # fmt: skip
    wall = time.perf_counter() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-300:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", tail)}
    passed, failed = counts.get("passed", 0), counts.get("failed", 0) + counts.get("error", 0)
    failed += counts.get("errors", 0)
    if smoke:  # no CUDA: all skipped is the right answer
        ok = proc.returncode == 0 and passed == 0 and counts.get("skipped", 0) > 0
    else:
        ok = proc.returncode == 0 and passed > 0 and failed == 0 and counts.get("skipped", 0) == 0
    note = tail if ok else _failures(proc.stdout) or tail
    return [Row("gpu", "pytest -m gpu", "tests passed", passed, failed, None, "all pass", ok,
                f"{wall:.0f} s; {note}"[:300], {"stdout": proc.stdout[-20000:]})]  # fmt: skip


def _failures(stdout: str) -> str:
    return "; ".join(line for line in stdout.splitlines() if line.startswith(("FAILED", "ERROR")))[:300]


def fit_cli(args: list[str], path: Path, timeout: float = 600) -> tuple[dict[str, Any], float]:
    """``learnkit ARGS --path PATH --json``: its JSON result and wall time (RuntimeError on failure)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [learnkit_exe(), *args, "--path", str(path), "--json"],
        capture_output=True, text=True, timeout=timeout, env=_env(),
    )  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout), wall


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "models" / "last.safetensors")


def precision_fits(data: str, label: str, args: list[str], work: Path, n_images: int) -> list[Row]:
    """``fit-one-cycle`` on ``data`` in fp32, bf16 and fp16: the loss falls, the weights stay finite."""
    import torch

    rows = []
    for precision in ("fp32", "bf16", "fp16"):
        log(f"gpu: fit {label} --precision {precision} ...")
        run = work / f"{label.replace(':', '_').replace(' ', '_')}-{precision}"
        try:
            result, wall = fit_cli(["fit-one-cycle", data, *args, "--precision", precision], run)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            rows.append(Row("gpu", f"{label} {precision}", "train_loss", None, None, None,
                            "falls, finite", False, str(exc)[:300]))  # fmt: skip
            continue
        losses = [row["train_loss"] for row in result["history"]]
        finite = all(bool(torch.isfinite(t).all()) for t in weights(run).values() if t.is_floating_point())
        falls = len(losses) >= 2 and all(map(math.isfinite, losses)) and losses[-1] < losses[0]
        epochs = [row["time"] for row in result["history"]]
        rate = f" (~{n_images / min(epochs):.0f} img/s incl. validation)" if n_images and min(epochs) else ""
        note = (
            f"train_loss {' '.join(f'{x:.3f}' for x in losses)}; accuracy {result.get('accuracy', 0):.3f}; "
            f"weights {'finite' if finite else 'NOT finite'}; fastest epoch {min(epochs):.2f} s{rate}; "
            f"wall {wall:.0f} s"
        )
        rows.append(Row("gpu", f"{label} {precision}", "train_loss", losses[-1], losses[0],
                        losses[-1] / losses[0] if losses[0] else None, "falls, finite",
                        falls and finite, note, {"result": result}))  # fmt: skip
    return rows


def _epoch_seconds(line: str) -> float:
    """The ``time`` field of a plain epoch line (``00:03``, ``00:03.4``, ``1:02:03``), in seconds."""
    found = re.search(r"time\s+([\d:.]+)", line)
    if not found:
        return 1.0
    seconds = 0.0
    for part in found.group(1).split(":"):
        seconds = seconds * 60 + float(part or 0)
    return max(seconds, 0.05)


def _interrupt(cmd: list[str], path: Path, fraction: float, timeout: float) -> tuple[int, str]:
    """Run ``cmd``; SIGINT ``fraction`` of an epoch after epoch 1's progress line. (exit, stderr)."""
    proc = subprocess.Popen([*cmd, "--path", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env())  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("epoch 1/"):
                time.sleep(fraction * _epoch_seconds(line))
                proc.send_signal(signal.SIGINT)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    reader.join(timeout=10)
    return proc.returncode, "".join(lines)


def interrupt_resume(data: str, args: list[str], work: Path, timeout: float = 300) -> list[Row]:
    """SIGINT mid-epoch, ``--resume last``, and the weights of an uninterrupted run: equal under
    ``--deterministic``. If they differ, a second uninterrupted run tells a resume bug (the two
    whole runs agree) from a device that does not repeat itself (they differ too)."""
    import torch

    cmd = [learnkit_exe(), "fit-one-cycle", data, *args, "--deterministic", "--seed", "0"]
    case, target = "SIGINT mid-epoch + --resume", "exit 130, equal weights"
    log("gpu: interrupt and resume ...")
    line, run, code, err = "", work / "stopped", 0, ""
    for attempt, fraction in enumerate((0.4, 0.7, 0.15)):
        run = work / f"stopped{attempt}"
        code, err = _interrupt(cmd, run, fraction, timeout)
        found = [x for x in err.splitlines() if x.startswith("error: interrupted (SIGINT)")]
        line = found[0] if found else ""
        if code == 130 and "after batch" in line:
            break
    if code != 130 or not line:
        return [Row("gpu", case, "exit code", code, 130, None, target, False, err.strip()[-300:])]
    try:
        resumed, _ = fit_cli([*cmd[1:], "--resume", "last"], run, timeout)
        fit_cli(cmd[1:], work / "whole", timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return [Row("gpu", case, "exit code", 130, 130, None, target, False, f"resume/whole: {exc}"[:300])]
    a, b = weights(run), weights(work / "whole")
    diff = max((float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel()), default=0.0)
    same = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    where = line.split("interrupted (SIGINT) ", 1)[-1].split(";")[0]
    note = f"stopped {where}; resumed_from {resumed.get('resumed_from')}; max |diff| {diff:.3g}"
    if not same:
        try:
            fit_cli(cmd[1:], work / "whole2", timeout)
            c = weights(work / "whole2")
            repeat = all(torch.equal(b[k], c[k]) for k in b)
            note += "; two uninterrupted runs " + ("agree: a resume bug" if repeat else "differ too")
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            note += f"; second whole run failed: {exc}"[:200]
    mid = "after batch" in line
    return [Row("gpu", case, "max abs diff", diff, 0.0, None, target, same and mid,
                note + ("" if mid else "; the signal landed at an epoch's end"))]  # fmt: skip
