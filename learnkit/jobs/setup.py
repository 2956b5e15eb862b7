"""Options to library objects, for every job: device, seed, metrics, data, the Learner of a run.

Written against the library's public pieces and free of typer and rich::

    from learnkit.jobs.setup import build_learner
    learn = build_learner("sample:shapes", "simple_cnn", bs=32, size=32, seed=0)

Errors a user can cause are :mod:`learnkit.errors` exceptions (exit codes 2/3/4 in the CLI).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learnkit import registry
from learnkit.errors import UsageError


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


def check_arch(arch: str, size: int) -> Any:
    """The zoo entry of ``arch`` (a UsageError with close names if unknown), checked against ``size``."""
    entry = registry.get(arch)
    if size < entry.min_size:
        raise UsageError(f"arch '{arch}' needs images of at least {entry.min_size} pixels; --size is {size}")
    return entry


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

    check_arch(arch, size)
    metric_fns = resolve_metrics(metrics)
    dev = resolve_device(device)
    seed_everything(seed)
    bunch = load_data(
        data, bs=bs, size=size, seed=seed, workers=workers, device=dev, valid_pct=valid_pct, cache=cache
    )
    learn = cnn_learner(bunch, arch, pretrained=pretrained, metrics=metric_fns, path=path)
    set_precision(learn, precision)
    if dev.type == "cuda":
        learn.to_channels_last()
    return learn


def set_precision(learn: Any, precision: str) -> None:
    """Switch ``learn`` to ``fp32``, ``bf16`` or ``fp16`` training."""
    switch = {"fp32": learn.to_fp32, "bf16": learn.to_bf16, "fp16": learn.to_fp16}.get(precision)
    if switch is None:
        raise UsageError(f"unknown precision {precision!r}: use fp32, bf16 or fp16")
    switch()
