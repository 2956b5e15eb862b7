"""A training run over a built Learner: checkpoints, resume, interruption, DDP.

:func:`run_fit` takes a built Learner through a whole run the way the command line promises:

- ``last`` (weights + optimizer + position + RNG + history) is written after every epoch, and
  ``best`` (the weights alone, for inference: a hard link of ``last``'s model file) whenever
  ``monitor`` (``valid_loss`` by default) improves, its metadata saying when (``best``: epoch,
  monitor, value); both are written by a background thread while the next epoch trains
  (:mod:`learnkit.checkpoint_writer`); ``patience`` stops a run that no longer improves;
  ``history.csv`` gets one row per epoch; a loss or weights that stop being finite end the run
  before any checkpoint is overwritten (:class:`~learnkit.callbacks.terminate_on_nan.TerminateOnNaN`).
- ``resume="last"`` continues a run exactly where its checkpoint stopped, mid-epoch included: the
  ``epochs`` given is the run's total, not more epochs on top. A run that is already complete is
  not trained again: the result says so (``note``) and the command exits 0. A complete run given a
  larger ``epochs`` is extended: the extra epochs continue it (at the constant rate for ``fit``; as
  a new cycle of the extra epochs for ``one_cycle``, as fastai's second ``fit_one_cycle`` call).
- ``init_from`` starts a new run from a checkpoint's weights only.
- SIGINT/SIGTERM stop the fit at the next batch boundary; ``last`` is then written and
  :class:`~learnkit.errors.RunInterrupted` (exit 130) says where to resume from.
- Under ``torchrun`` the batches run through DistributedDataParallel and only rank 0 writes files.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.callback import Callback, RunState
from learnkit.errors import LearnkitError, RunInterrupted, UsageError
from learnkit.jobs.resume import check_resumable, describe_stop, resume_hint, run_position

if TYPE_CHECKING:
    from learnkit.learner import Learner

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


def monitor_names(learn: Learner) -> list[str]:
    """What ``--monitor`` may name: the losses and the learner's metrics."""
    from learnkit.metrics import metric_name

    return ["valid_loss", "train_loss", *(metric_name(m) for m in learn.metrics)]


def check_monitor(learn: Learner, monitor: str) -> None:
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
    learn: Learner,
    *,
    monitor: str | None = None,
    patience: int | None = None,
    save_best: bool = True,
    append_csv: bool = False,
    check_nan_every: int | None = 50,
    loggers: Sequence[str] = ("csv",),
) -> list[Any]:
    """The callbacks whose state a checkpoint keeps: ``last`` every epoch, ``best`` on improvement of
    ``monitor`` (None: ``valid_loss``), early stopping after ``patience`` epochs without improvement,
    the NaN guard, and the ``loggers`` (:mod:`learnkit.loggers`; ``csv`` is ``history.csv``)."""
    from learnkit.callbacks.terminate_on_nan import TerminateOnNaN
    from learnkit.callbacks.tracking import EarlyStoppingCallback, SaveModelCallback
    from learnkit.checkpoint_writer import CheckpointWriter
    from learnkit.loggers import create_loggers

    if patience is not None and patience < 0:
        raise UsageError(f"--patience must be >= 0, got {patience}")
    monitor = monitor or "valid_loss"
    check_monitor(learn, monitor)
    writer = CheckpointWriter()  # both written in the background while the next epoch trains
    callbacks: list[Any] = [
        TerminateOnNaN(learn, check_every=check_nan_every),
        *create_loggers(loggers, learn, append=append_csv),
        SaveModelCallback(learn, every="epoch", name=LAST, rolling=True, writer=writer),
    ]
    if save_best:
        callbacks.append(  # `last` and the reported results stay the last epoch's; `best` is for
            # inference (no optimizer file) and, saved with `last`, a link of last's model file
            SaveModelCallback(
                learn, monitor=monitor, every="improvement", name=BEST, load_best=False, with_opt=False,
                writer=writer,
            )
        )  # fmt: skip
    callbacks.append(writer)
    if patience is not None:
        callbacks.append(EarlyStoppingCallback(learn, monitor=monitor, patience=patience))
    return callbacks


def run_fit(
    learn: Learner,
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
    reshard: bool = False,
    sync_bn: bool = False,
    command: Sequence[str] | None = None,
    check_nan_every: int | None = 50,
    loggers: Sequence[str] = ("csv",),
    allow_changed_data: bool = False,
    at_train_end: Callable[[], Any] | None = None,
    **schedule_kwargs: Any,
) -> dict[str, Any]:
    """Train ``learn`` for a run of ``epochs`` epochs (see the module docstring).

    Args:
        learn: a Learner built for the run (zoo model, data, precision).
        epochs: the run's total number of epochs (a resumed run does what is left of it).
        lr, wd: a float, a per-group sequence or a slice (``wd=None``: the Learner's default).
        schedule: ``fit`` (constant rate) or ``one_cycle`` (``schedule_kwargs`` go to it).
        reporter: progress reporter (``ProgressCallback`` protocol) or None.
        monitor, patience, save_best: ``best`` checkpoint (on by default, following
            ``valid_loss`` unless ``monitor`` names another) and early stopping (see
            :func:`tracking_callbacks`).
        resume: continue the run saved in this checkpoint (weights, optimizer, position, RNG,
            history, callbacks' state).
        init_from: start a new run from this checkpoint's weights only.
        reshard: let ``resume`` continue with another number of processes than the run saved
            (the epoch's position re-planned, said in the result's ``note``); else that is refused.
        sync_bn: under DDP, BatchNorm statistics over every process's batch (SyncBatchNorm).
        allow_changed_data: resume even when the data differs from what the checkpoint's fit saw
            (a warning); by default that is a DataError naming the change (exit 3), and so is a
            class added or removed, always.
        command: the command line that started the run, for the resume hint of an interruption.
        check_nan_every: how often (batches) the NaN guard synchronises to look at the loss.
        loggers: the trackers' names (``csv``, ``tensorboard`` or a plug-in's, see
            :mod:`learnkit.loggers`).
        at_train_end: called once the fit has trained its last epoch (not when it was stopped
            by a signal or failed), before the end-of-fit wait for the checkpoints being written:
            the command line starts drawing its plots there.

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
        loggers=loggers,
    )
    from learnkit.checkpoint_writer import CheckpointWriter

    _remove_stale_temp_files(learn)
    learn.callbacks.extend(callbacks)  # kept in checkpoints, so a resumed run restores their state
    try:
        if init_from is not None:
            learn.load(init_from, with_opt=False)
        resumed_at = None
        if resume is not None:
            check_resume_data(learn, resume, allow_changed_data)
            learn.load(resume, with_opt=True, reshard=reshard)
            resumed_at = run_position(learn)
            resharded = getattr(learn, "resharded", None)
            if not check_resumable(learn, resume, epochs, schedule):
                return {
                    **fit_result(learn, epochs),
                    "note": f"{resume} is a finished run of {epochs} epochs; nothing to train "
                    f"(start a new run from its weights with --init-from {resume})",
                }
        try:
            _fit(learn, epochs, lr, wd, schedule, reporter, command, schedule_kwargs, sync_bn, at_train_end)
        except OSError as exc:  # history.csv, a plot: the disk is full, read-only or gone
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            where = exc.filename or learn.path
            last = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
            kept = f"the previous checkpoint {last} is intact" if last.is_file() else "nothing saved yet"
            raise LearnkitError(f"could not write {where}: {reason}; {kept}") from None
        result = fit_result(learn, epochs)
        if resumed_at is not None:
            result["resumed_from"] = {"epoch": resumed_at[0], "batch": resumed_at[1]}
            if resharded:
                result["note"] = reshard_note(resharded, resumed_at[0])
        return result
    finally:
        for cb in callbacks:
            if isinstance(cb, CheckpointWriter):
                cb.close()  # whatever ended the run, no checkpoint is left half-written
            learn.callbacks.remove(cb)


def reshard_note(resharded: Sequence[int], epoch: int) -> str:
    """What ``--reshard`` did: ``(saved processes, processes now, saved batch, new batch)``."""
    saved, now, old, new = resharded
    return (
        f"resharded from {saved} to {now} processes: epoch {epoch + 1} resumed at batch {new} "
        f"(batch {old} of {saved} processes); the run differs from one never interrupted"
    )


def check_resume_data(learn: Learner, resume: str, allow_changed_data: bool) -> None:
    """Before resuming from ``resume``: the data's classes must be the checkpoint's (else a
    DataError naming them) and its files those the fit saw (see
    :func:`learnkit.data.fingerprint.check_unchanged`; a warning when ``allow_changed_data``)."""
    import warnings

    from learnkit.checkpoint import read_model_header, resolve_checkpoint
    from learnkit.data.fingerprint import check_unchanged
    from learnkit.jobs.evaluate import ChangedDataWarning, check_classes

    file = resolve_checkpoint(resume, learn.path, learn.model_dir)
    if not file.is_file():
        return  # the load says what is missing
    _, meta = read_model_header(file, budget=False)  # the run it continues: not budgeted
    data = learn.data
    check_classes(file, meta.get("classes"), getattr(data, "classes", None))
    changes = check_unchanged(meta.get("data_fingerprint"), data, allow=allow_changed_data, what=str(file))
    if changes:
        message = f"resuming on data that changed since {file} was saved: {'; '.join(changes)}"
        warnings.warn(message, ChangedDataWarning, stacklevel=2)


def fit_result(learn: Learner, epochs: int) -> dict[str, Any]:
    """A fit's result: the last history row's values on top, the whole history beside them."""
    history = [dict(row) for row in learn.recorder.history]
    final = {k: v for k, v in (history[-1] if history else {}).items() if k not in _NOT_RESULTS}
    checkpoint = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
    return {**final, "epochs": epochs, "history": history, "checkpoint": str(checkpoint)}


_NOT_RESULTS = ("epoch", "time", "lr", "mom")  # per-epoch bookkeeping, kept in the history only


def _remove_stale_temp_files(learn: Learner) -> None:
    """Delete the temporary files a killed run left half-written beside its checkpoints: only by the
    process holding the run folder's lock (no other writer can be using them then)."""
    from learnkit.checkpoint import stale_temp_files
    from learnkit.distributed import is_main
    from learnkit.run_lock import holds_lock

    if is_main() and holds_lock(learn.path):
        for tmp in stale_temp_files(Path(learn.path) / learn.model_dir):
            tmp.unlink(missing_ok=True)


def _fit(
    learn: Learner,
    epochs: int,
    lr: Any,
    wd: Any,
    schedule: str,
    reporter: Any,
    command,
    kwargs,
    sync_bn: bool = False,
    at_train_end: Callable[[], Any] | None = None,
) -> None:
    from learnkit.callbacks.distributed import DistributedTrainer
    from learnkit.callbacks.progress import ProgressCallback
    from learnkit.callbacks.terminate_on_nan import TerminateOnNaN
    from learnkit.interrupt import StopOnSignal, catch_signals

    remaining = epochs - learn.epoch
    with catch_signals() as stop:
        stopper = StopOnSignal(stop)
        extra = [DistributedTrainer(learn, sync_bn=sync_bn), stopper]
        if reporter is not None:
            extra.append(ProgressCallback(reporter))
        if at_train_end is not None:
            extra.append(_AtTrainEnd(at_train_end, stopper))
        if schedule == "one_cycle":
            learn.fit_one_cycle(remaining, lr, wd=wd, callbacks=extra, **kwargs)
        else:
            learn.fit(remaining, lr, wd=wd, callbacks=extra)
        nan = next(cb for cb in learn.callbacks if isinstance(cb, TerminateOnNaN))
        if nan.message is not None:
            raise LearnkitError(f"{nan.message}; {_last_good(learn)}")
        if stop.requested and stopper.stopped_at is not None and run_position(learn) < (epochs, 0):
            _save_interrupted(learn, stopper.stopped_at, epochs, command, stop.name)


class _AtTrainEnd(Callback):
    """Call ``fn`` at the end of a fit that trained to its end (no exception, no signal), before the
    checkpoint writer (order 55) waits for the last writes."""

    order = 54

    def __init__(self, fn: Callable[[], Any], stopper: Any) -> None:
        self.fn, self.stopper = fn, stopper

    def on_train_end(self, state: RunState) -> None:
        if state.exception is None and self.stopper.stopped_at is None:
            self.fn()


def _last_good(learn: Learner) -> str:
    file = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
    return f"the last good checkpoint is {file}" if file.is_file() else "no checkpoint was written"


def _save_interrupted(learn: Learner, position: tuple[int, int], epochs: int, command, signame: str) -> None:
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
