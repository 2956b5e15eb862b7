"""``learnkit ... --nproc N``: the same command over N processes on this machine, under torchrun.

``learnkit fit-one-cycle data --arch resnet18 --nproc 2`` runs::

    python -m torch.distributed.run --standalone --nproc-per-node 2 \
        -m learnkit fit-one-cycle data --arch resnet18

and waits for it. What the workers print comes through; torchrun's own log lines and its closing
report are left out (kept with ``--debug``), and the exit code is the failed worker's own (2, 3,
4, 130 ...) rather than torchrun's 1. Ctrl-C (or SIGTERM) is passed to the workers, which stop at
the same batch, save ``last`` and exit 130; a second one ends them at once.

Also here: the small argv helpers of the command line (``--resume`` without a name, the command
that resumes a run). Nothing in this module imports torch.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

COMMAND_ENV = "LEARNKIT_COMMAND"  # the user's command line (JSON list), for the workers' resume hint
_TORCHRUN_LOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ \S+\] ")
_EXITCODE = re.compile(r"exitcode\s*:\s*(-?\d+)")


def normalize_args(args: Sequence[str]) -> list[str]:
    """A bare ``--resume`` (last on the line, or followed by an option) becomes ``--resume last``."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg == "--resume" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "last")
            break
    return out


def without_nproc(args: Sequence[str]) -> list[str]:
    """``args`` minus ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def user_command(args: Sequence[str] | None = None) -> list[str]:
    """The command line as the user would type it again: ``learnkit <args>``.

    Under ``--nproc`` the launcher passes its own (``--nproc`` included) to the workers; under a
    plain torchrun it is rebuilt as a torchrun command. Empty when this process is not ``learnkit``
    (a test runner calling the CLI in-process).
    """
    saved = os.environ.get(COMMAND_ENV)
    if saved:
        try:
            command = json.loads(saved)
            if isinstance(command, list) and all(isinstance(a, str) for a in command):
                return command
        except ValueError:
            pass
    if args is None:
        if not _run_as_learnkit(sys.argv[0]):
            return []  # e.g. a test runner: no command line to repeat
        args = sys.argv[1:]
    args = list(args)
    if "LOCAL_WORLD_SIZE" in os.environ and "RANK" in os.environ:
        n = os.environ["LOCAL_WORLD_SIZE"]
        return ["torchrun", "--standalone", "--nproc-per-node", n, "-m", "learnkit", *args]
    return ["learnkit", *args]


def _run_as_learnkit(argv0: str) -> bool:
    """Whether this process is the ``learnkit`` command (console script or ``python -m learnkit``)."""
    path = Path(argv0)
    return path.name == "learnkit" or (path.name == "__main__.py" and path.parent.name == "learnkit")


def torchrun_command(nproc: int, args: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``learnkit <args>`` (minus ``--nproc``) on ``nproc``
    processes of this machine."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
        "-m", "learnkit", *without_nproc(args),
    ]  # fmt: skip


def relaunch(nproc: int, args: Sequence[str], *, debug: bool = False) -> int:
    """Run ``learnkit <args>`` under torchrun on ``nproc`` processes; return the exit code to use."""
    env = dict(os.environ)
    env[COMMAND_ENV] = json.dumps(["learnkit", *args])
    # torchrun would set 1 thread per worker and print a banner about it; share the cores instead
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    proc = subprocess.Popen(
        torchrun_command(nproc, args), env=env, stderr=None if debug else subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C reaches this process only; it is passed on below
    )  # fmt: skip
    signalled: list[int] = []

    def forward(signum: int, frame: object) -> None:
        signalled.append(signum)
        workers = _children(proc.pid)
        if len(signalled) > 1:  # the second one: end everything now
            for pid in [*workers, proc.pid]:
                _kill(pid, signal.SIGKILL)
        elif workers:  # the workers stop at a batch boundary and save; torchrun then reports them
            for pid in workers:
                _kill(pid, signum)
        else:
            _kill(proc.pid, signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code_from_report = None if debug else _pass_stderr(proc)
        code = proc.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if code == 0:
        return 0
    if code_from_report is not None:
        return code_from_report
    return 130 if signalled else (code if code > 0 else 1)


def _pass_stderr(proc: subprocess.Popen) -> int | None:
    """Copy the workers' stderr lines to ours, leaving out torchrun's log lines and its closing
    traceback/report; return the root-cause worker's exit code found in that report."""
    held: list[str] = []
    for raw in proc.stderr:
        line = raw.decode("utf-8", "replace")
        if held or line.startswith("Traceback (most recent call last):"):
            held.append(line)  # torchrun's report is the last thing it prints: decide at the end
            continue
        if _TORCHRUN_LOG.match(line):
            continue
        sys.stderr.write(line)
        sys.stderr.flush()
    text = "".join(held)
    if "torch/distributed" not in text and "torch.distributed" not in text:
        sys.stderr.write(text)
        return None
    codes = [int(c) for c in _EXITCODE.findall(text.split("Root Cause", 1)[-1])]
    return next((c for c in codes if c > 0), None)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
