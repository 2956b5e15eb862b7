"""CLI start-up: ``learnkit --help``, ``learnkit fit --help`` and a TAB-completion request, against
``python -c pass`` (the interpreter alone) and ``python -c 'import torch'`` (what the CLI avoids).

Each command is run in a fresh process, the commands taking turns, many rounds; a result is the
median wall time from spawn to exit. The target is a difference: ``learnkit --help`` at most
0.15 s slower than ``python -c pass``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.common import Row, interleave, learnkit_exe, log, median

TARGET = 0.15  # seconds over the bare interpreter


def commands() -> dict[str, tuple[list[str], dict[str, str]]]:
    exe = learnkit_exe()
    complete = {
        "_LEARNKIT_COMPLETE": "complete_bash",
        "COMP_WORDS": "learnkit fit --arch res",
        "COMP_CWORD": "3",
    }
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], {}),
        "python -c 'import torch'": ([sys.executable, "-c", "import torch"], {}),
        "learnkit --help": ([exe, "--help"], {}),
        "learnkit fit --help": ([exe, "fit", "--help"], {}),
        "completion: fit --arch res<TAB>": ([exe], complete),
    }


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env={**os.environ, "COLUMNS": "100", **env}, timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    if "_LEARNKIT_COMPLETE" in env and b"resnet18" not in proc.stdout:
        raise RuntimeError(f"the completion request did not list resnet18: {proc.stdout[:200]!r}")
    return elapsed


def run(quick: bool = False) -> list[Row]:
    rounds = 6 if quick else 15
    log(f"startup: {rounds} rounds of {len(commands())} commands ...")
    cmds = commands()
    _timed(*cmds["learnkit --help"])  # warm the file cache once
    times = interleave({name: (lambda c=c: _timed(*c)) for name, c in cmds.items()}, rounds)
    med = {name: median(ts) for name, ts in times.items()}
    bare, torch_import = med["python -c pass"], med["python -c 'import torch'"]
    rows = []
    for name in ("learnkit --help", "learnkit fit --help", "completion: fit --arch res<TAB>"):
        over = med[name] - bare
        target = f"<= +{TARGET} s" if name == "learnkit --help" else ""
        rows.append(
            Row(
                "startup",
                name,
                "s (wall)",
                med[name],
                bare,
                over,
                target,
                over <= TARGET if target else None,
                f"ratio is the difference in s; import torch alone: {torch_import:.2f} s",
                {"rounds": rounds, "times": times[name]},
            )
        )
    note = "for scale: what --help and completion do not pay"
    torch_times = {"times": times["python -c 'import torch'"]}
    rows.append(
        Row("startup", "python -c 'import torch'", "s (wall)", None, torch_import, torch_import - bare, "",
            None, note, torch_times)
    )  # fmt: skip
    return rows
