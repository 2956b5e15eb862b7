"""The training run of ``learnkit fit`` / ``fit-one-cycle``: checkpoints, resume, interruption, DDP.

:func:`run_fit` takes a built Learner through a whole run the way the command line promises:

- ``last`` (weights + optimizer + position + RNG + history) is written after every epoch, and
  ``best`` whenever ``monitor`` improves; ``patience`` stops a run that no longer improves;
  ``history.csv`` gets one row per epoch; a loss or weights that stop being finite end the run
  before any checkpoint is overwritten (:class:`~learnkit.callbacks.terminate_on_nan.TerminateOnNaN`).
- ``resume="last"`` continues a run exactly where its checkpoint stopped, mid-epoch included: the
  ``epochs`` given is the run's total, not more epochs on top. A run that is already complete is
  not trained again: the result says so (``note``) and the command exits 0.
- ``init_from`` starts a new run from a checkpoint's weights only.
- SIGINT/SIGTERM stop the fit at the next batch boundary; ``last`` is then written and
  :class:`~learnkit.errors.RunInterrupted` (exit 130) says where to resume from.
- Under ``torchrun`` the batches run through DistributedDataParallel and only rank 0 writes files.
"""

from __future__ import annotations

import difflib
import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from learnkit.errors import LearnkitError, RunInterrupted, UsageError
from learnkit.runner import fit_result

LAST, BEST = "last", "best"


@contextmanager
def deterministic_mode(on: bool) -> Iterator[None]:
    """Within the block, torch uses deterministic algorithms (``torch.use_deterministic_algorithms``).

    ``warn_only``: an op without a deterministic kernel (a few CUDA backward passes) warns rather
    than failing the run. cuDNN autotuning is off. The previous settings come back afterwards.
    """
    if not on:
        yield
        return
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to repeat itself
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


def monitor_names(learn: Any) -> list[str]:
    """What ``--monitor`` may name: the losses and the learner's metrics."""
    from learnkit.metrics import metric_name

    return ["valid_loss", "train_loss", *(metric_name(m) for m in learn.metrics)]


def check_monitor(learn: Any, monitor: str) -> None:
    """A UsageError (with close names) unless ``monitor`` is something a fit records.

    Over several processes only the validation values are reduced over the ranks; ``train_loss``
    is each rank's own, so ranks could disagree on when to stop: it cannot be monitored there.
    """
    from learnkit.distributed import is_distributed

    names = monitor_names(learn)
    if monitor not in names:
        close = difflib.get_close_matches(monitor, names, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        raise UsageError(f"cannot monitor {monitor!r}; {hint}choose one of {', '.join(names)}")
    if monitor == "train_loss" and is_distributed():
        raise UsageError("over several processes, monitor valid_loss or a metric (train_loss is per process)")


def tracking_callbacks(
    learn: Any,
    *,
    monitor: str | None = None,
    patience: int | None = None,
    save_best: bool = True,
    append_csv: bool = False,
    check_nan_every: int | None = 50,
) -> list[Any]:
    """The callbacks whose state a checkpoint keeps: ``last`` every epoch, ``best`` on improvement of
    ``monitor``, early stopping after ``patience`` epochs without improvement, the NaN guard and
    ``history.csv``."""
    from learnkit.callbacks.csv_logger import CSVLogger
    from learnkit.callbacks.terminate_on_nan import TerminateOnNaN
    from learnkit.callbacks.tracking import EarlyStoppingCallback, SaveModelCallback

    if patience is not None and patience < 0:
        raise UsageError(f"--patience must be >= 0, got {patience}")
    if monitor is not None:
        check_monitor(learn, monitor)
    callbacks: list[Any] = [
        TerminateOnNaN(learn, check_every=check_nan_every),
        CSVLogger(learn, append=append_csv),
        SaveModelCallback(learn, every="epoch", name=LAST),
    ]
    if monitor is not None and save_best:
        callbacks.append(SaveModelCallback(learn, monitor=monitor, every="improvement", name=BEST))
    if patience is not None:
        callbacks.append(EarlyStoppingCallback(learn, monitor=monitor or "valid_loss", patience=patience))
    return callbacks


def _position(learn: Any) -> tuple[int, int]:
    return int(learn.epoch), int(learn.batch)


def check_resumable(learn: Any, name: str, epochs: int, schedule: str) -> bool:
    """After loading ``name``: True if its run still has epochs to go, False if it is complete.

    A checkpoint past ``epochs``, or saved by the other schedule (or by a 1cycle of another
    length: its schedule could not continue), is a UsageError.
    """
    epoch, batch = _position(learn)
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
    if cycle and record.get("tot_epochs") != epochs:
        raise UsageError(
            f"{name} is part of a {record.get('tot_epochs')}-epoch cycle; resume it with --epochs "
            f"{record.get('tot_epochs')} (to train on from its weights, start a new run with --init-from)"
        )
    return True


def describe_stop(position: tuple[int, int], epochs: int) -> str:
    """``after epoch 3 of 10`` or ``after batch 7 of epoch 4/10`` (1-based, as progress shows)."""
    epoch, batch = position
    if batch == 0:
        return f"after epoch {epoch} of {epochs}"
    return f"after batch {batch} of epoch {epoch + 1}/{epochs}"


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


def run_fit(
    learn: Any,
    epochs: int,
    lr: Any = 3e-3,
    wd: Any = None,
    *,
    schedule: str = "fit",
    reporter: Any = None,
    monitor: str | None = None,
    patience: int | None = None,
    save_best: bool = True,
    resume: str | None = None,
    init_from: str | None = None,
    command: Sequence[str] | None = None,
    check_nan_every: int | None = 50,
    **schedule_kwargs: Any,
) -> dict[str, Any]:
    """Train ``learn`` for a run of ``epochs`` epochs (see the module docstring).

    Args:
        learn: a Learner built for the run (zoo model, data, precision).
        epochs: the run's total number of epochs (a resumed run does what is left of it).
        lr, wd, schedule, schedule_kwargs: as :func:`learnkit.runner.train`.
        reporter: progress reporter (``ProgressCallback`` protocol) or None.
        monitor, patience, save_best: ``best`` checkpoint and early stopping (see
            :func:`tracking_callbacks`).
        resume: continue the run saved in this checkpoint (weights, optimizer, position, RNG,
            history, callbacks' state).
        init_from: start a new run from this checkpoint's weights only.
        command: the command line that started the run, for the resume hint of an interruption.
        check_nan_every: how often (batches) the NaN guard synchronises to look at the loss.

    Raises:
        RunInterrupted: SIGINT/SIGTERM stopped the fit (``last`` was written first).
        LearnkitError: the run diverged (exit 1); the last good checkpoint is kept.
    """
    if resume is not None and init_from is not None:
        raise UsageError("give --resume or --init-from, not both")
    callbacks = tracking_callbacks(
        learn,
        monitor=monitor,
        patience=patience,
        save_best=save_best,
        append_csv=resume is not None,
        check_nan_every=check_nan_every,
    )
    _remove_stale_temp_files(learn)
    learn.callbacks.extend(callbacks)  # kept in checkpoints, so a resumed run restores their state
    try:
        if init_from is not None:
            learn.load(init_from, with_opt=False)
        resumed_at = None
        if resume is not None:
            learn.load(resume, with_opt=True)
            resumed_at = _position(learn)
            if not check_resumable(learn, resume, epochs, schedule):
                return {
                    **fit_result(learn, epochs),
                    "note": f"{resume} is a finished run of {epochs} epochs; nothing to train "
                    f"(start a new run from its weights with --init-from {resume})",
                }
        _fit(learn, epochs, lr, wd, schedule, reporter, command, schedule_kwargs)
        result = fit_result(learn, epochs)
        result["plots"] = save_fit_plots(learn)
        if resumed_at is not None:
            result["resumed_from"] = {"epoch": resumed_at[0], "batch": resumed_at[1]}
        return result
    finally:
        for cb in callbacks:
            learn.callbacks.remove(cb)


def save_fit_plots(learn: Any) -> list[str]:
    """The curves of a finished fit, as ``<path>/plots/*.png`` (rank 0; [] elsewhere): the losses,
    the lr and momentum, and the metrics (when there are any). Returns their paths."""
    from learnkit.distributed import is_main

    if not is_main() or not learn.recorder.lrs:
        return []
    rec = learn.recorder
    plots = [rec.plot_losses(), rec.plot_lr(show_moms=True)]
    if rec.metrics:
        plots.append(rec.plot_metrics())
    return [str(p) for p in plots]


def _remove_stale_temp_files(learn: Any) -> None:
    """Delete the temporary files a killed run left half-written beside its checkpoints (rank 0)."""
    from learnkit.checkpoint import stale_temp_files
    from learnkit.distributed import is_main

    if is_main():
        for tmp in stale_temp_files(Path(learn.path) / learn.model_dir):
            tmp.unlink(missing_ok=True)


def _fit(learn: Any, epochs: int, lr: Any, wd: Any, schedule: str, reporter: Any, command, kwargs) -> None:
    from learnkit.callbacks.distributed import DistributedTrainer
    from learnkit.callbacks.progress import ProgressCallback
    from learnkit.callbacks.terminate_on_nan import TerminateOnNaN
    from learnkit.interrupt import StopOnSignal, catch_signals

    remaining = epochs - learn.epoch
    with catch_signals() as stop:
        stopper = StopOnSignal(stop)
        extra = [DistributedTrainer(learn), stopper]
        if reporter is not None:
            extra.append(ProgressCallback(reporter))
        if schedule == "one_cycle":
            learn.fit_one_cycle(remaining, lr, wd=wd, callbacks=extra, **kwargs)
        else:
            learn.fit(remaining, lr, wd=wd, callbacks=extra)
        nan = next(cb for cb in learn.callbacks if isinstance(cb, TerminateOnNaN))
        if nan.message is not None:
            raise LearnkitError(f"{nan.message}; {_last_good(learn)}")
        if stop.requested and stopper.stopped_at is not None and _position(learn) < (epochs, 0):
            _save_interrupted(learn, stopper.stopped_at, epochs, command, stop.name)


def _last_good(learn: Any) -> str:
    file = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
    return f"the last good checkpoint is {file}" if file.is_file() else "no checkpoint was written"


def _save_interrupted(learn: Any, position: tuple[int, int], epochs: int, command, signame: str) -> None:
    """Write ``last`` where the fit stopped (rank 0), then raise RunInterrupted with the resume hint."""
    from learnkit.callbacks.terminate_on_nan import weights_finite
    from learnkit.distributed import barrier, is_main

    where = describe_stop(position, epochs)
    if not weights_finite(learn.model):
        raise RunInterrupted(
            f"interrupted ({signame}) {where}, but the weights are no longer finite: nothing saved; "
            f"{_last_good(learn)}"
        )
    if is_main():
        file = learn.save(LAST, with_opt=True)
    else:
        file = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
    barrier()  # no rank exits (and makes torchrun stop the others) before rank 0 has written
    hint = resume_hint(command)
    raise RunInterrupted(f"interrupted ({signame}) {where}; saved {file}; resume with: {hint}")


__all__ = [
    "check_monitor",
    "check_resumable",
    "deterministic_mode",
    "describe_stop",
    "resume_hint",
    "run_fit",
    "tracking_callbacks",
]
