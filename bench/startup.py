"""CLI start-up: ``learnkit --help``, every command's ``--help``, ``zoo list``, ``version`` and a TAB
completion request, against ``python -c pass`` (the interpreter alone) and ``python -c 'import
torch'`` (what the CLI avoids).

Each command is run in a fresh process, the commands taking turns, many rounds; a result is the
median wall time from spawn to exit. Beside it, the median CPU time (user + system) of the
child, a steadier figure on a machine loaded by other work (where wall time measures the
neighbours too). The target is a difference: ``learnkit --help`` at most
0.10 s slower than ``python -c pass``; every command's ``--help``, ``learnkit zoo list`` and
``learnkit version`` at most 0.15 s (issue 26).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

from bench.common import Row, interleave, learnkit_exe, log, median

TARGET = 0.10  # seconds over the bare interpreter: learnkit --help
TARGET_COMMAND = 0.15  # a command's --help, zoo list, version
SUBCOMMANDS = ["fit", "fit-one-cycle", "lr-find", "validate", "predict", "tta", "unet", "summary",
               "export", "report", "sample", "version", "zoo"]  # fmt: skip


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
        **{f"learnkit {c} --help": ([exe, c, "--help"], {}) for c in SUBCOMMANDS},
        "learnkit zoo list": ([exe, "zoo", "list"], {}),
        "learnkit version": ([exe, "version"], {}),
        "completion: fit --arch res<TAB>": ([exe], complete),
    }


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one run of ``cmd`` (cpu: the child's user + system time)."""
    cpu = _cpu_children()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env={**os.environ, "COLUMNS": "100", **env}, timeout=120)
    elapsed = time.perf_counter() - start, _cpu_children() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    if "_LEARNKIT_COMPLETE" in env and b"resnet18" not in proc.stdout:
        raise RuntimeError(f"the completion request did not list resnet18: {proc.stdout[:200]!r}")
    return elapsed


def run(quick: bool = False) -> list[Row]:
    rounds = 9 if quick else 15
    log(f"startup: {rounds} rounds of {len(commands())} commands ...")
    cmds = commands()
    for cmd in cmds.values():  # warm the file cache and write the bytecode once
        _timed(*cmd)
    both = interleave({name: (lambda c=c: _timed(*c)) for name, c in cmds.items()}, rounds)
    times = {name: [t[0] for t in ts] for name, ts in both.items()}
    cpu = {name: median(t[1] for t in ts) for name, ts in both.items()}
    med = {name: median(ts) for name, ts in times.items()}
    bare, torch_import = med["python -c pass"], med["python -c 'import torch'"]
    rows = []
    for name in [n for n in cmds if n.startswith(("learnkit", "completion"))]:
        over = med[name] - bare
        limit = TARGET if name == "learnkit --help" else TARGET_COMMAND
        rows.append(
            Row(
                "startup",
                name,
                "s (wall)",
                med[name],
                bare,
                over,
                f"<= +{limit} s",
                over <= limit,
                f"difference in s; CPU time {cpu[name]:.3f} s, +{cpu[name] - cpu['python -c pass']:.3f} "
                f"over the bare interpreter's; import torch alone: {torch_import:.2f} s",
                {"rounds": rounds, "times": times[name], "cpu_median": cpu[name]},
            )
        )
    note = "for scale: what --help and completion do not pay"
    torch_times = {"times": times["python -c 'import torch'"]}
    rows.append(
        Row("startup", "python -c 'import torch'", "s (wall)", None, torch_import, torch_import - bare, "",
            None, note, torch_times)
    )  # fmt: skip
    return rows
