"""The one training entry point: :func:`run` trains what a :class:`RunConfig` describes.

``learnkit fit``, ``fit-one-cycle`` and ``unet`` each build a RunConfig and call :func:`run`;
they differ only in the model (a CNN or a U-Net over a zoo encoder) and the schedule (constant
rate or 1cycle). The run, in order:

1. the run folder is claimed (:mod:`learnkit.jobs.run_folder`): a folder holding another run is
   refused before anything is written, unless resumed, started from (``init_from``) or replaced
   (``exist_ok``); a resumed run's config must match the saved one but for where it runs;
2. the seed is made concrete (drawn when not given) and the data and Learner are built;
3. ``PATH/config.yaml`` is written and every checkpoint's metadata carries the config;
4. :func:`learnkit.jobs.fitting.run_fit` trains: ``last`` every epoch, ``best`` on improvement,
   history.csv, resume, interruption (exit 130), DistributedDataParallel under torchrun.

Example:
    >>> from learnkit.jobs.config import RunConfig
    >>> cfg = RunConfig.from_flat("fit-one-cycle", data="sample:shapes", arch="simple_cnn", seed=0,
    ...                           path="run")
    >>> run(cfg)["checkpoint"]  # doctest: +SKIP
    'run/models/last.safetensors'
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.errors import RunInterrupted, UsageError
from learnkit.jobs.config import RunConfig, lr_value
from learnkit.jobs.fitting import BEST, run_fit
from learnkit.jobs.run_folder import (
    absolute_data,
    check_outside_data,
    check_process_count,
    check_same_run,
    claim_run_folder,
    lock_run_folder,
    saved_config,
    write_config,
)

if TYPE_CHECKING:
    from learnkit.learner import Learner


def run(config: RunConfig, *, reporter: Any = None, command: Sequence[str] | None = None) -> dict[str, Any]:
    """Train the run ``config`` describes; returns the final epoch's values and the run's files.

    Args:
        config: the run (see :class:`~learnkit.jobs.config.RunConfig`).
        reporter: an object with the ``ProgressCallback`` reporter methods, or None.
        command: the command line, for the resume hint printed when the run is interrupted.

    Returns:
        The final epoch's ``train_loss``, ``valid_loss`` and metrics as top-level keys, plus
        ``epochs``, ``history`` (one row per epoch), ``checkpoint`` (``last``), ``best`` (when kept)
        and ``config`` (``config.yaml``); a resumed run adds ``resumed_from``, one with nothing left
        to train a ``note``; a U-Net adds ``dice_per_class``, ``iou_per_class`` and ``classes``.
    """
    from learnkit import distributed
    from learnkit.cpu_load import Probe
    from learnkit.data.samples import resolve_data
    from learnkit.jobs.runs import place_run
    from learnkit.jobs.setup import check_cache, check_memory, resolve_device

    probe = Probe()  # the machine's load while the run starts picks the CPU thread count
    if config.data.data is not None:
        resolve_data(str(config.data.data))  # missing data is said first, before a run is looked for
    config, note = place_run(config)  # no path: a new folder under runs/ (a resume: the latest run)
    config.validate()
    if note and getattr(reporter, "note", None) is not None:
        reporter.note(note)
    dev = distributed.local_device(resolve_device(config.runtime.device))
    data = resolve_data(str(config.data.data))  # missing data is said before the run folder is touched
    check_outside_data(config.checkpoint.path, data)
    config = absolute_data(config)  # config.yaml replays from any folder
    check_cache(config.data.data, config.data.size, config.data.cache, masks=config.model.unet is not None)
    check_memory(config.data.size, config.data.bs, dev)
    with lock_run_folder(config.checkpoint.path):  # one writer: the claim, config.yaml and the fit
        return _run_locked(config, dev, reporter, command, probe)


def _run_locked(
    config: RunConfig, dev: Any, reporter: Any, command: Sequence[str] | None, probe: Any = None
) -> dict[str, Any]:
    """:func:`run`, once rank 0 holds the run folder's lock: the folder claimed (an overwrite check
    and ``--exist-ok``'s removal, under the lock), the resume checked, the run trained."""
    from learnkit import distributed
    from learnkit.distributed import env_rank
    from learnkit.jobs.fitting import deterministic_mode
    from learnkit.jobs.setup import cpu_threads, learner_for

    claim_run_folder(config, remove=env_rank() == 0)  # before any rank writes
    saved = saved_config(config)
    if saved is not None and config.runtime.seed is None:
        config = replace(config, runtime=replace(config.runtime, seed=saved.runtime.seed))
    config = config.with_seed()
    world = distributed.env_world_size()
    if world > 1 and config.runtime.nproc != world:  # recorded (torchrun's or --nproc's count)
        config = replace(config, runtime=replace(config.runtime, nproc=world))
    reshard = config.checkpoint.reshard and config.checkpoint.resume is not None
    if saved is not None:
        check_same_run(saved, config)
        check_process_count(saved, world, reshard)
    if config.runtime.sync_bn and world > 1 and dev.type != "cuda":
        raise UsageError(f"--sync-bn needs CUDA devices (torch's SyncBatchNorm); this run is on {dev.type}")
    joined = distributed.init_from_env(dev)
    ok = False
    try:
        with deterministic_mode(config.runtime.deterministic):
            learn = learner_for(config, str(dev))
            tuning = config.runtime.cpu_tuning
            threads = cpu_threads(dev, probe, deterministic=config.runtime.deterministic) if tuning else None
            follow = None
            if threads is not None and not config.runtime.deterministic:
                from learnkit.callbacks.cpu_threads import CpuThreads
                from learnkit.cpu_load import usable_cores

                follow = CpuThreads(usable_cores())  # follows the load while training
                learn.callbacks.append(follow)
            learn.run_metadata["config"] = config.to_dict()
            if distributed.is_main():
                announce_data(learn, config, reporter)
            config_file = write_config(config) if distributed.is_main() else None
            plots: list[str] = []
            if distributed.is_main():
                from learnkit.plots import preload

                preload()  # the plots at the end draw at once

            def draw_plots() -> None:  # while the last checkpoints are written
                plots.extend(save_fit_plots(learn, fit_best_epoch(learn), background=True))

            s = config.schedule
            result = run_fit(
                learn,
                s.epochs,
                lr_value(s.lr),
                None if s.wd is None else lr_value(s.wd, allow_zero=True),
                schedule=s.kind,
                reporter=reporter,
                monitor=config.checkpoint.monitor,
                patience=config.checkpoint.patience,
                save_best=config.checkpoint.save_best,
                resume=config.checkpoint.resume,
                init_from=config.checkpoint.init_from,
                reshard=reshard,
                sync_bn=config.runtime.sync_bn,
                allow_changed_data=config.checkpoint.allow_changed_data,
                loggers=config.checkpoint.loggers,
                command=command,
                at_train_end=draw_plots,
                **(s.cycle_kwargs() if s.kind == "one_cycle" else {}),
            )
        if config.model.unet is not None:
            result.update(segmentation_result(learn))
        best = learn.path / learn.model_dir / f"{BEST}.safetensors"
        if config.checkpoint.save_best and best.is_file():
            result.update(best_result(best))
        if config_file is not None:
            result["config"] = str(config_file)
        if threads is not None:  # chosen from the load at the start, then followed (CpuThreads)
            result["cpu_threads"] = threads
            if follow is not None and follow.changes:
                result["cpu_threads_changes"] = [list(c) for c in follow.changes]
        result["plots"] = plots  # being drawn while the result prints
        ok = True
        return result
    except RunInterrupted:
        ok = True  # every rank stopped at the same batch and rank 0 has saved: leave together
        raise
    finally:
        if joined:
            distributed.shutdown(wait=ok)


def fit_best_epoch(learn: Learner) -> int | None:
    """The epoch of the run's ``best`` checkpoint, as :func:`best_result` reads it from the file,
    known before that file is written: this fit's best if it found one, else the file's (from
    before a resume: written long ago)."""
    from learnkit.callbacks.tracking import SaveModelCallback

    for cb in learn.callbacks:
        if isinstance(cb, SaveModelCallback) and cb.every == "improvement" and cb.best_epoch is not None:
            return cb.best_epoch
    best = learn.path / learn.model_dir / f"{BEST}.safetensors"
    return best_result(best).get("best_epoch") if best.is_file() else None


def announce_data(learn: Learner, config: RunConfig, reporter: Any) -> None:
    """Say what the run learns from before it trains (:mod:`learnkit.jobs.data_summary`): the lines
    through ``reporter.note`` (when it has one), the warnings as warnings, every skipped image in
    ``RUN/skipped.txt``."""
    import warnings

    from learnkit.jobs.data_summary import describe_data, write_skipped

    info = describe_data(learn.data, epochs=config.schedule.epochs, schedule=config.schedule.kind)
    lines = list(info["lines"])
    listed = write_skipped(info["skipped"], learn.path)
    if listed is not None:
        lines.append(f"skipped {len(info['skipped'])} unreadable images, every one listed in {listed}")
    note = getattr(reporter, "note", None)
    if note is not None:
        for line in lines:
            note(line)
    for message in info["warnings"]:
        warnings.warn(message, stacklevel=2)


def best_result(file: Any) -> dict[str, Any]:
    """``best`` (the file), and ``best_epoch``, ``best_monitor``, ``best_value``: what made it
    best, from its metadata (history.csv's epoch numbering)."""
    from learnkit.checkpoint import read_header
    from learnkit.errors import CheckpointError

    out: dict[str, Any] = {"best": str(file)}
    try:
        _, meta = read_header(file)
    except CheckpointError:
        return out
    made = meta.get("best")
    if isinstance(made, dict) and isinstance(made.get("epoch"), int):
        out.update(best_epoch=made["epoch"], best_monitor=made.get("monitor"), best_value=made.get("value"))
    return out


def save_fit_plots(learn: Learner, best_epoch: int | None = None, background: bool = False) -> list[str]:
    """The curves of a finished fit, as ``<path>/plots/*.png`` (rank 0; [] elsewhere): the losses,
    the lr and momentum, and the metrics (when there are any), ``best_epoch`` marked. Returns
    their paths.

    With ``background`` they are drawn by a thread (matplotlib imported there) while the caller
    goes on (prints its result); the process waits for it before exiting (it is no daemon), and a
    plot that cannot be written is one ``warning:`` line on stderr. The learner's recorder must
    not change meanwhile (the command line's fit is over).
    """
    from learnkit.distributed import is_main

    if not is_main() or not learn.recorder.lrs:
        return []
    rec = learn.recorder
    metrics = bool(rec.metrics and rec.metrics_names)
    names = ["losses", "lr", *(["metrics"] if metrics else [])]
    paths = [str(rec._plot_path(name)) for name in names]

    def draw() -> None:
        rec.plot_losses(best_epoch=best_epoch)
        rec.plot_lr(show_moms=True)
        if metrics:
            rec.plot_metrics(best_epoch=best_epoch)

    if not background:
        draw()
        return paths

    def draw_or_warn() -> None:
        try:
            draw()
        except Exception as exc:  # a picture never fails the run
            if isinstance(exc, OSError) and exc.errno:
                reason = os.strerror(exc.errno).lower()
            else:
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            where = Path(learn.path) / "plots"
            print(f"warning: could not write the plots in {where}: {reason}", file=sys.stderr, flush=True)

    threading.Thread(target=draw_or_warn, name="learnkit-plots").start()
    return paths


def segmentation_result(learn: Learner) -> dict[str, Any]:
    """``dice_per_class`` and ``iou_per_class`` (by class name) of the last validation, and ``classes``."""
    from learnkit.seg_metrics import ConfusionMetric

    found = {m.name: m for m in learn.metrics if isinstance(m, ConfusionMetric)}
    classes = list(learn.data.classes)
    return {
        "dice_per_class": found["dice"].per_class(classes) if "dice" in found else {},
        "iou_per_class": found["iou"].per_class(classes) if "iou" in found else {},
        "classes": classes,
    }


__all__ = ["run", "segmentation_result"]
