"""Options to library objects, for every job: device, seed, metrics, data, the Learner of a run.

Written against the library's public pieces and free of typer and rich::

    from learnkit.jobs.config import RunConfig
    from learnkit.jobs.setup import learner_for
    learn = learner_for(RunConfig.from_flat("fit", data="sample:shapes", arch="simple_cnn", bs=32, seed=0))

Errors a user can cause are :mod:`learnkit.errors` exceptions (exit codes 2/3/4 in the CLI).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit import registry
from learnkit.errors import UsageError

if TYPE_CHECKING:
    from learnkit.jobs.config import RunConfig
    from learnkit.learner import Learner

LABELS_CSV = "labels.csv"  # read instead of class folders when DATA has one (fastai's from_csv)


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


def cpu_threads(device: Any, probe: Any = None, deterministic: bool = False) -> int | None:
    """Set the torch threads of a CPU job to the cores other processes leave idle; returns the count.

    ``probe`` (a :class:`learnkit.cpu_load.Probe` started when the job began) measures what the
    rest of the machine used meanwhile (a short sample when None). A thread sharing its core with
    another busy process stalls every parallel region, so on an idle 2-core machine a fit uses
    both cores and beside one busy process it uses one (bench/README.md has the measurements).
    Left alone (None) off the CPU or when ``OMP_NUM_THREADS`` is set. Where the load cannot be
    measured, and for ``deterministic`` runs (whose thread count must not depend on the load),
    1 thread on CPUs of at most 2 cores and torch's default above.
    """
    import torch

    from learnkit.cpu_load import Probe, idle_cores, usable_cores

    if getattr(device, "type", str(device)) != "cpu" or "OMP_NUM_THREADS" in os.environ:
        return None
    cores = usable_cores()
    busy = None if deterministic else (probe if probe is not None else Probe()).others_busy()
    if busy is None:
        if cores > 2:
            return None
        threads = 1
    else:
        threads = idle_cores(busy, cores)
    torch.set_num_threads(threads)
    return threads


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
    augment: Any = True,
    label_delim: str | None = None,
    norm_stats: dict | None = None,
) -> Any:
    """An ``ImageDataBunch`` for a folder or a ``sample:NAME``, as the commands build it.

    ``augment``: train-time augmentation (``AugmentSettings``; ``True``: the light preset, ``False``:
    none). A folder with a ``labels.csv`` (and no ``train/``) is read through it (fastai's
    ``from_csv``); ``label_delim`` makes that multi-label.

    ``seed`` fixes the ``valid_pct`` split, the shuffling and the augmentation (0 when None).
    ``cache`` (``auto``, ``ram``, ``none``) keeps the decoded images in RAM; ``workers=None`` picks
    the loader workers to match (none with the RAM cache, else up to 4, kept between epochs).
    ``task="segmentation"`` reads ``images/``, ``masks/`` and ``codes.txt`` instead (a
    ``SegmentationDataBunch``; ``valid_pct`` defaults to 0.2 there). ``norm_stats`` (a checkpoint's)
    normalise instead of ImageNet's statistics.
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
            norm_stats=norm_stats,
            cache=cache,
            augment=augment,
        )
    folder = resolve_data(str(data))
    if (Path(folder) / LABELS_CSV).is_file() and not (Path(folder) / "train").is_dir():
        return ImageDataBunch.from_csv(
            folder,
            LABELS_CSV,
            valid_pct=valid_pct,
            label_delim=label_delim,
            seed=0 if seed is None else seed,
            size=size,
            bs=bs,
            num_workers=workers,
            device=device,
            normalize=normalize,
            norm_stats=norm_stats,
            cache=cache,
            augment=augment,
        )
    if label_delim is not None:
        raise UsageError(f"--label-delim needs {Path(folder) / LABELS_CSV} (file name, labels)")
    return ImageDataBunch.from_folder(
        folder,
        augment=augment,
        valid_pct=valid_pct,
        seed=0 if seed is None else seed,
        size=size,
        bs=bs,
        num_workers=workers,
        device=device,
        normalize=normalize,
        norm_stats=norm_stats,
        cache=cache,
    )


def check_arch(arch: str, size: int) -> Any:
    """The zoo entry of ``arch`` (a UsageError with close names if unknown), checked against ``size``."""
    entry = registry.get(arch)
    if size < entry.min_size:
        raise UsageError(f"arch '{arch}' needs images of at least {entry.min_size} pixels; --size is {size}")
    return entry


def check_cache(data: str | Path, size: int, cache: str, *, masks: bool = False) -> None:
    """``--cache ram`` that cannot fit, refused (DataError, exit 3) from a count of the image files
    before anything is listed in full, decoded, or any batch estimated (:func:`check_memory`).

    The count takes every image file under the folder (``images/`` for segmentation, with a mask
    each); the data set checks again with its exact count when it is built."""
    if cache != "ram":
        return
    from learnkit.data.dataset import resolve_cache
    from learnkit.data.folder import list_images
    from learnkit.data.samples import resolve_data

    folder = Path(resolve_data(str(data)))
    if not folder.is_dir():
        return  # said by the data loading, with its own message
    n = len(list_images(folder / "images" if masks else folder))
    what = f"{n:,} images{' and masks' if masks else ''} at {size} px"
    resolve_cache("ram", (4 if masks else 3) * size * size * n, what=what)


ACTIVATION_FACTOR = 16


def check_memory(size: int, bs: int, device: Any = None) -> None:
    """Refuse an image size whose batches cannot fit in memory, with the estimate.

    The estimate is deliberately rough and generous to the user: a float32 batch of ``bs`` RGB
    images of ``size`` x ``size`` times :data:`ACTIVATION_FACTOR` for the activations kept for the
    backward pass, against the memory available now (the GPU's free memory on CUDA).
    """
    need = bs * 3 * size * size * 4 * ACTIVATION_FACTOR
    have = _available_memory(device)
    if have is not None and need > have:
        raise UsageError(
            f"--size {size} with --bs {bs} needs about {need / 2**30:.1f} GiB for a training batch "
            f"(estimate), more than the {have / 2**30:.1f} GiB available; use a smaller --size or --bs"
        )


def _available_memory(device: Any) -> int | None:
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    from learnkit.data.memory import mem_available

    return mem_available()


def build_learner(
    data: str | Path,
    arch: str,
    *,
    metrics: Sequence[str | Callable] = ("accuracy",),
    augment: Any = None,
    **options: Any,
) -> Learner:
    """The classifier Learner of ``fit`` for a folder or sample: :func:`learner_for` of the RunConfig
    these options describe (``bs``, ``size``, ``seed``, ``path``, ``device``, ``pretrained``...,
    the option names of ``learnkit fit``; the others take its defaults).

    Example:
        >>> learn = build_learner("sample:shapes", "simple_cnn", bs=32, size=32, seed=0)  # doctest: +SKIP
    """
    from learnkit.jobs.config import RunConfig

    options = {k: str(v) if k == "path" else v for k, v in options.items()}
    config = RunConfig.from_flat("fit", data=str(data), arch=arch, **options)
    return learner_for(config, config.runtime.device, metrics=metrics, augment=augment)


def learner_for(
    config: RunConfig,
    device: str = "auto",
    *,
    metrics: Sequence[str | Callable] | None = None,
    augment: Any = None,
) -> Learner:
    """The one Learner builder of a run, for both tasks: ``config.model.unet`` set makes it a U-Net
    on segmentation data, else a classifier. The task decides the data, the model and the default
    metrics (``accuracy``; ``accuracy_thresh`` and ``fbeta`` for multi-label data; dice, iou and
    pixel accuracy for masks); the rest is one path: the arch and its pretrained weights checked
    before the data is read, the seed, precision, channels-last (CPU and CUDA), the CPU's
    small-convolution gradient and the run's recipes (loss options, mixup, clip, EMA, freezing...).

    ``augment``: concrete ``AugmentSettings`` over the config's (``None``: the config's).
    """
    from learnkit.pretrained import resolve_pretrained

    d, r, unet = config.data, config.runtime, config.model.unet
    arch = str(config.model.arch)
    segmentation = unet is not None
    check_arch(arch, d.size)
    if segmentation:
        from learnkit.vision.unet_learner import encoder_cut

        encoder_cut(arch)  # an arch that cannot serve as an encoder fails before the data is read
    weights = resolve_pretrained(config.model.pretrained, arch)  # a missing cached file, likewise
    dev = resolve_device(device)
    seed_everything(r.seed)
    bunch = load_data(
        d.data, bs=d.bs, size=d.size, seed=r.seed, workers=r.workers, device=dev, valid_pct=d.valid_pct,
        task="segmentation" if segmentation else "classification", cache=d.cache,
        augment=d.augment().settings() if augment is None else augment,
        label_delim=None if segmentation else d.label_delim,
    )  # fmt: skip
    if segmentation:
        from learnkit.seg_metrics import segmentation_metrics
        from learnkit.vision.learners import unet_learner

        learn = unet_learner(
            bunch, arch, pretrained=weights, blur=unet.blur, blur_final=unet.blur_final,
            self_attention=unet.self_attention, bottle=unet.bottle, last_cross=unet.last_cross,
            norm_type=None if unet.norm_type == "none" else unet.norm_type, y_range=unet.y_range,
            metrics=resolve_metrics(metrics, "segmentation") if metrics else segmentation_metrics(),
            path=config.checkpoint.path,
        )  # fmt: skip
    else:
        from learnkit.metrics import MULTI_LABEL_METRICS
        from learnkit.vision.learners import cnn_learner

        metrics = list(metrics or ("accuracy",))
        if getattr(bunch, "multi_label", False):
            bunch.thresh = d.thresh
            if metrics == ["accuracy"]:
                metrics = list(MULTI_LABEL_METRICS)
        learn = cnn_learner(bunch, arch, pretrained=weights, metrics=resolve_metrics(metrics),
                            path=config.checkpoint.path)  # fmt: skip
    learn.quiet = True  # a command reports through its own reporter, never the default table
    learn.restart_epochs = False  # a run's epochs (history.csv, resume) count on across its fits
    set_precision(learn, r.precision)
    if dev.type in ("cuda", "cpu"):  # faster on both: CPU steps 5-15% (bench/README.md)
        learn.to_channels_last()
    if r.cpu_tuning:
        add_cpu_conv_grad(learn, dev)
    _apply_recipes(learn, config)
    return learn


def _apply_recipes(learn: Learner, config: RunConfig) -> None:
    """The run's recipes (loss options, mixup/cutmix, clip, accum, EMA, compile, freezing)."""
    from learnkit.jobs.recipes import apply_recipes

    s = config.schedule
    apply_recipes(
        learn,
        label_smoothing=s.label_smoothing,
        class_weights=s.class_weights,
        mixup=s.mixup,
        cutmix=s.cutmix,
        clip=s.clip,
        accum=s.accum,
        ema=s.ema,
        compile=config.runtime.compile,
        freeze=config.model.freeze,
    )


def add_cpu_conv_grad(learn: Learner, dev: Any) -> None:
    """On the CPU, the batched weight gradient for small convolution outputs while training
    (:mod:`learnkit.conv_grad`: a resnet18 step at 32 px about 2x faster, bench/README.md)."""
    if dev.type == "cpu":
        from learnkit.callbacks.conv_grad import SmallConvGrad

        learn.callbacks.append(SmallConvGrad())


def set_precision(learn: Learner, precision: str) -> None:
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
