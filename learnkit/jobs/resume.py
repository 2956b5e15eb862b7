"""Resuming a run: where a checkpoint stands in its run, and the command that continues it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.learner import Learner

LAST = "last"


def run_position(learn: Learner) -> tuple[int, int]:
    """``(epoch, batch)``: where the learner stands in its run (batch 0: at an epoch's start)."""
    return int(learn.epoch), int(learn.batch)


def check_resumable(learn: Learner, name: str, epochs: int, schedule: str) -> bool:
    """After loading ``name``: True if its run still has epochs to go, False if it is complete.

    A complete run with ``epochs`` beyond its own is extended (True): the extra epochs continue it,
    a 1cycle run with a new cycle of the extra epochs. A checkpoint past ``epochs``, saved by the
    other schedule, or taken inside a 1cycle that ``epochs`` does not end (its schedule could not
    continue), is a UsageError.
    """
    epoch, batch = run_position(learn)
    if (epoch, batch) > (epochs, 0):
        raise UsageError(
            f"{name} is at epoch {epoch + (batch > 0)} of its run, past --epochs {epochs} "
            "(the run's total, not epochs to add); give the run's --epochs"
        )
    if (epoch, batch) == (epochs, 0):
        return False
    record = getattr(learn.recorder, "schedule", None) or {}
    cycle = record.get("kind") == "one_cycle"
    if (epoch, batch) != (0, 0) and cycle != (schedule == "one_cycle"):
        saved_by, needs = ("fit-one-cycle", "fit") if cycle else ("fit", "fit-one-cycle")
        raise UsageError(f"{name} was saved by `learnkit {saved_by}`; resume it with that, not `{needs}`")
    end = int(record.get("start_epoch") or 0) + int(record.get("tot_epochs") or 0)
    finished = batch == 0 and epoch == end  # the cycle is done: more epochs are a new cycle
    if cycle and end != epochs and not finished:
        raise UsageError(
            f"{name} is part of a cycle ending at epoch {end}; resume it with --epochs {end} "
            "(to train on from its weights, start a new run with --init-from)"
        )
    return True


def describe_stop(position: tuple[int, int], epochs: int) -> str:
    """``after 3 of 10 epochs`` or ``after batch 7 of epoch 3 (of 10)``: epochs numbered from 0, as
    the table, history.csv and the progress lines number them; a batch count is a count."""
    epoch, batch = position
    if batch == 0:
        return f"after {epoch} of {epochs} epochs"
    return f"after batch {batch} of epoch {epoch} (of {epochs})"


def resume_hint(command: Sequence[str] | None, name: str = LAST) -> str:
    """The command that resumes a run: ``command`` with ``--resume NAME`` in place of any
    ``--resume``/``--init-from`` it had."""
    if not command:
        return f"the same command with --resume {name}"
    out, skip = [], False
    args = list(command)
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg in ("--resume", "--init-from"):
            nxt = args[i + 1] if i + 1 < len(args) else None
            skip = arg == "--init-from" or (nxt is not None and not nxt.startswith("-"))
            continue
        if arg.startswith(("--resume=", "--init-from=")):
            continue
        out.append(arg)
    return shlex.join([*out, "--resume", name])
