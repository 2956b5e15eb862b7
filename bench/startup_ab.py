"""Start-up of two revisions of the command line side by side (before/after a change), alternating.

Each revision's ``learnkit``, ``cli`` and ``zoo`` are extracted with ``git archive`` into a
temporary folder (laid out as the installed package: ``learnkit/cli``, ``learnkit/zoo``) and run
from there in a fresh interpreter of this venv, the commands of both revisions and ``python -c
pass`` taking turns, ``--rounds`` rounds. Reports the median wall time and the median CPU time
(user + system of the child) of each over the bare interpreter's: on a machine loaded by other
work the CPU time is the steadier figure, and both revisions pay the same load.

    python -m bench.startup_ab main HEAD --rounds 9
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

COMMANDS = (["--help"], ["fit", "--help"], ["validate", "--help"], ["version"], ["zoo", "list"])
RUNNER = 'import sys\nsys.argv[0] = "learnkit"\nfrom learnkit.cli.entry import main\nmain()\n'


def _extract(rev: str, into: Path) -> Path:
    src = into / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", rev, "learnkit", "cli", "zoo"], capture_output=True, check=True
    )
    tar = into / "tree.tar"
    tar.write_bytes(archive.stdout)
    with tarfile.open(tar) as t:
        t.extractall(src, filter="data")
    (src / "cli").rename(src / "learnkit" / "cli")
    (src / "zoo").rename(src / "learnkit" / "zoo")
    (into / "run.py").write_text(RUNNER)
    return into


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.startup_ab")
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        trees = {
            side: _extract(rev, Path(tmp) / side)
            for side, rev in (("before", args.before), ("after", args.after))
        }
        cases: dict[str, tuple[list[str], str | None]] = {"python -c pass": (["-c", "pass"], None)}
        for side, tree in trees.items():
            for command in COMMANDS:
                cases[f"{side}: learnkit {' '.join(command)}"] = (
                    [str(tree / "run.py"), *command],
                    str(tree / "src"),
                )
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        names = list(cases)
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                command, path = cases[name]
                env = {**os.environ, "COLUMNS": "100", **({"PYTHONPATH": path} if path else {})}
                cpu, wall = _cpu(), time.perf_counter()
                proc = subprocess.run([sys.executable, *command], capture_output=True, env=env, cwd=tmp)
                times[name].append((time.perf_counter() - wall, _cpu() - cpu))
                if proc.returncode != 0:
                    raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr.decode()[-300:]}")
    med = {
        name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
        for name, ts in times.items()
    }
    bare_wall, bare_cpu = med["python -c pass"]
    print(f"{args.before} -> {args.after}, {args.rounds} rounds; python -c pass: wall {bare_wall:.3f} s, "
          f"cpu {bare_cpu:.3f} s; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    for name in names[1:]:
        wall, cpu = med[name]
        print(f"  {name:36s} wall +{wall - bare_wall:.3f} s   cpu +{cpu - bare_cpu:.3f} s")


if __name__ == "__main__":
    main()
