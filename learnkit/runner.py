"""The jobs the command line runs: options in, plain result dicts out.

Each function here is what one command does, written against the library's public pieces and free
of typer and rich, so it is as usable from a notebook or a script as from ``learnkit``::

    from learnkit import runner
    result = runner.train("sample:shapes", "simple_cnn", epochs=3, lr=1e-3, seed=0, path="run")
    # the other commands' jobs are in learnkit.jobs (evaluate, info, lr_find, predict, tta, unet, zoo)

Errors a user can cause are :mod:`learnkit.errors` exceptions (exit codes 2/3/4 in the CLI).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learnkit import registry
from learnkit.errors import RunInterrupted, UsageError

LAST = "last"  # the checkpoint every fit* keeps, written after each epoch
SCHEDULES = ("fit", "one_cycle")


# --- options -> library objects ---
def resolve_device(device: str = "auto") -> Any:
    """A ``torch.device`` for ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda[:i]`` or ``mps``.

    A device this machine lacks is a :class:`UsageError`.
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:<index> or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"device {device!r}: no CUDA device here (try --device cpu)")
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"device {device!r}: there are {count} CUDA device(s), 0 to {count - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("device 'mps': MPS is not available here (try --device cpu)")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unsupported device {device!r}: use auto, cpu, cuda, cuda:<index> or mps")
    return dev


def seed_everything(seed: int | None) -> None:
    """Seed Python, NumPy and torch (all devices), so a run with the same seed repeats."""
    if seed is None:
        return
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_metrics(names: Sequence[str | Callable], task: str = "classification") -> list[Callable]:
    """Metric functions from names in :mod:`learnkit.metrics` (``accuracy``, ``error_rate``...).

    ``dice``, ``iou`` and ``pixel_accuracy`` are the set-level metrics of :mod:`learnkit.seg_metrics`;
    for ``task="segmentation"`` the classification default ``("accuracy",)`` means all three.
    """
    from learnkit import metrics as metric_module
    from learnkit import seg_metrics

    pixel = {m.name: m for m in seg_metrics.segmentation_metrics()}
    if task == "segmentation" and list(names) == ["accuracy"]:
        return list(pixel.values())
    found = []
    for name in names:
        if callable(name):
            found.append(name)
            continue
        if name in pixel:
            found.append(pixel[name])
            continue
        fn = getattr(metric_module, str(name), None)
        if not callable(fn) or str(name).startswith("_"):
            raise UsageError(f"unknown metric {name!r}")
        found.append(fn)
    return found


def load_data(
    data: str | Path,
    *,
    bs: int = 64,
    size: int = 64,
    seed: int | None = None,
    workers: int | None = 0,
    device: Any = None,
    valid_pct: float | None = None,
    normalize: bool = True,
    task: str = "classification",
    cache: str = "auto",
) -> Any:
    """An ``ImageDataBunch`` for a folder or a ``sample:NAME``, as the commands build it.

    ``seed`` fixes the ``valid_pct`` split, the shuffling and the augmentation (0 when None).
    ``cache`` (``auto``, ``ram``, ``none``) keeps the decoded images in RAM; ``workers=None`` picks
    the loader workers to match (none with the RAM cache, else up to 4, kept between epochs).
    ``task="segmentation"`` reads ``images/``, ``masks/`` and ``codes.txt`` instead (a
    ``SegmentationDataBunch``; ``valid_pct`` defaults to 0.2 there).
    """
    from learnkit.data import ImageDataBunch, SegmentationDataBunch
    from learnkit.data.samples import resolve_data

    if task == "segmentation":
        return SegmentationDataBunch.from_folder(
            resolve_data(str(data)),
            valid_pct=0.2 if valid_pct is None else valid_pct,
            seed=0 if seed is None else seed,
            size=size,
            bs=bs,
            num_workers=workers,
            device=device,
            normalize=normalize,
            cache=cache,
        )
    return ImageDataBunch.from_folder(
        resolve_data(str(data)),
        valid_pct=valid_pct,
        seed=0 if seed is None else seed,
        size=size,
        bs=bs,
        num_workers=workers,
        device=device,
        normalize=normalize,
        cache=cache,
    )


def _check_arch(arch: str, size: int) -> Any:
    """The zoo entry of ``arch`` (a UsageError with close names if unknown), checked against ``size``."""
    entry = registry.get(arch)
    if size < entry.min_size:
        raise UsageError(f"arch '{arch}' needs images of at least {entry.min_size} pixels; --size is {size}")
    return entry


# --- jobs ---
def train(
    data: str | Path,
    arch: str,
    epochs: int,
    lr: Any = 3e-3,
    wd: Any = None,
    *,
    schedule: str = "fit",
    bs: int = 64,
    size: int = 64,
    seed: int | None = None,
    path: str | Path = ".",
    workers: int | None = 0,
    device: str = "auto",
    metrics: Sequence[str | Callable] = ("accuracy",),
    reporter: Any = None,
    valid_pct: float | None = None,
    pretrained: str | Path | None = None,
    precision: str = "fp32",
    cache: str = "auto",
    monitor: str | None = None,
    patience: int | None = None,
    save_best: bool = True,
    resume: str | None = None,
    init_from: str | None = None,
    deterministic: bool = False,
    command: Sequence[str] | None = None,
    **schedule_kwargs: Any,
) -> dict[str, Any]:
    """Train ``arch`` on ``data`` for ``epochs`` epochs; ``last`` is saved after every epoch.

    Args:
        data: an image folder or a built-in sample (``sample:shapes``).
        arch: a zoo name (``learnkit.registry.names()``).
        lr, wd: a float, a per-group sequence or a slice (``wd=None``: the Learner's default).
        schedule: ``fit`` (constant rate) or ``one_cycle`` (``schedule_kwargs`` go to it).
        reporter: an object with the ``ProgressCallback`` reporter methods, or None.
        pretrained: a local state-dict file to start from (the body is then frozen).
        precision: ``fp32``, ``bf16`` or ``fp16`` (mixed precision, fp32 master weights).
        cache, workers: decoded images in RAM (``auto``, ``ram``, ``none``) and loader worker
            processes (``None``: none with the RAM cache, else up to 4); see :func:`load_data`.
        monitor, patience, save_best: ``best`` is saved when ``monitor`` (``valid_loss``,
            ``train_loss`` or a metric) improves; ``patience`` epochs without improvement stop the run.
        resume: continue the run saved in this checkpoint exactly (``epochs`` is the run's total).
        init_from: start a new run from this checkpoint's weights only.
        deterministic: use torch's deterministic algorithms (with ``seed``: repeatable weights).
        command: the command line, for the resume hint printed when the run is interrupted.

    Under ``torchrun`` the process group is joined from the environment (gloo on CPUs, NCCL on
    GPUs), batches run through DistributedDataParallel, and only rank 0 writes files. See
    :mod:`learnkit.jobs.train` for checkpoints, resuming and interruption (exit 130).

    Returns:
        The final epoch's ``train_loss``, ``valid_loss`` and metrics as top-level keys, plus
        ``epochs``, ``history`` (one row per epoch) and ``checkpoint`` (the ``last`` file); a
        resumed run adds ``resumed_from``, and one with nothing left to train a ``note``.
    """
    from learnkit import distributed
    from learnkit.jobs.train import deterministic_mode, run_fit

    if schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {schedule!r}: use {' or '.join(SCHEDULES)}")
    if schedule_kwargs and schedule != "one_cycle":
        raise UsageError(f"options {', '.join(sorted(schedule_kwargs))} need schedule 'one_cycle'")
    if resume is not None and init_from is not None:
        raise UsageError("give --resume or --init-from, not both")
    check_run_folder(path)
    dev = distributed.local_device(resolve_device(device))
    joined = distributed.init_from_env(dev)
    ok = False
    try:
        with deterministic_mode(deterministic):
            learn = build_learner(
                data,
                arch,
                bs=bs,
                size=size,
                seed=seed,
                path=path,
                workers=workers,
                device=str(dev),
                metrics=metrics,
                valid_pct=valid_pct,
                pretrained=pretrained,
                precision=precision,
                cache=cache,
            )
            result = run_fit(
                learn, epochs, lr, wd, schedule=schedule, reporter=reporter, monitor=monitor,
                patience=patience, save_best=save_best, resume=resume, init_from=init_from,
                command=command, **schedule_kwargs,
            )  # fmt: skip
        ok = True
        return result
    except RunInterrupted:
        ok = True  # every rank stopped at the same batch and rank 0 has saved: leave together
        raise
    finally:
        if joined:
            distributed.shutdown(wait=ok)


def build_learner(
    data: str | Path,
    arch: str,
    *,
    bs: int = 64,
    size: int = 64,
    seed: int | None = None,
    path: str | Path = ".",
    workers: int | None = 0,
    device: str = "auto",
    metrics: Sequence[str | Callable] = ("accuracy",),
    valid_pct: float | None = None,
    pretrained: str | Path | None = None,
    precision: str = "fp32",
    cache: str = "auto",
) -> Any:
    """The Learner a training command works with: data folder or sample, zoo arch, precision.

    On CUDA the model is kept channels-last (faster convolutions; the zoo's models allow it).
    """
    from learnkit.vision.cnn import cnn_learner

    _check_arch(arch, size)
    check_run_folder(path)
    metric_fns = resolve_metrics(metrics)
    dev = resolve_device(device)
    seed_everything(seed)
    bunch = load_data(
        data, bs=bs, size=size, seed=seed, workers=workers, device=dev, valid_pct=valid_pct, cache=cache
    )
    learn = cnn_learner(bunch, arch, pretrained=pretrained, metrics=metric_fns, path=path)
    learn.quiet = True  # a command reports through its own reporter, never the default table
    set_precision(learn, precision)
    if dev.type == "cuda":
        learn.to_channels_last()
    return learn


def set_precision(learn: Any, precision: str) -> None:
    """Switch ``learn`` to ``fp32``, ``bf16`` or ``fp16`` training.

    fp16 on a CPU is refused: autocast runs it about 10x slower than fp32 there, with nothing
    gained; bf16 is the CPU's mixed precision.
    """
    switch = {"fp32": learn.to_fp32, "bf16": learn.to_bf16, "fp16": learn.to_fp16}.get(precision)
    if switch is None:
        raise UsageError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
    device = getattr(getattr(learn, "data", None), "device", None)
    if precision == "fp16" and getattr(device, "type", None) == "cpu":
        raise UsageError(
            "--precision fp16 on the CPU runs about 10x slower than fp32: use --precision bf16 "
            "(or fp32) on the CPU, fp16 on a GPU"
        )
    switch()


def check_run_folder(path: str | Path) -> None:
    """``--path`` must be a folder (or not exist yet): a file there is a usage error."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--path {path} is a file, not a folder: give the folder for the run's files")


def fit_result(learn: Any, epochs: int) -> dict[str, Any]:
    """A fit's result: the last history row's values on top, the whole history beside them."""
    history = [dict(row) for row in learn.recorder.history]
    final = {k: v for k, v in (history[-1] if history else {}).items() if k not in ("epoch", "time")}
    checkpoint = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
    return {**final, "epochs": epochs, "history": history, "checkpoint": str(checkpoint)}
