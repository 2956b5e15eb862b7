"""The jobs the command line runs: options in, plain result dicts out.

Each function here is what one command does, written against the library's public pieces and free
of typer and rich, so it is as usable from a notebook or a script as from ``learnkit``::

    from learnkit import runner
    result = runner.train("sample:shapes", "simple_cnn", epochs=3, lr=1e-3, seed=0, path="run")
    runner.validate("sample:shapes", "last", path="run")["accuracy"]

Errors a user can cause are :mod:`learnkit.errors` exceptions (exit codes 2/3/4 in the CLI).
"""

from __future__ import annotations

import difflib
import platform
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learnkit import registry
from learnkit.errors import CheckpointError, RunInterrupted, UsageError
from learnkit.version import __version__

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


def fit_result(learn: Any, epochs: int) -> dict[str, Any]:
    """A fit's result: the last history row's values on top, the whole history beside them."""
    history = [dict(row) for row in learn.recorder.history]
    final = {k: v for k, v in (history[-1] if history else {}).items() if k not in ("epoch", "time")}
    checkpoint = Path(learn.path) / learn.model_dir / f"{LAST}.safetensors"
    return {**final, "epochs": epochs, "history": history, "checkpoint": str(checkpoint)}


def read_model_metadata(model: str | Path, path: str | Path = ".") -> tuple[Path, dict[str, Any]]:
    """The checkpoint file named by ``model`` (a name under ``path/models`` or a file) and its metadata.

    Raises :class:`CheckpointError` for a missing file, a file that is not a learnkit model
    checkpoint, or one without what rebuilds its model.
    """
    from learnkit.checkpoint import MODEL_FORMAT, read_safetensors, resolve_checkpoint

    file = resolve_checkpoint(str(model), path)
    if not file.is_file():
        raise CheckpointError(f"no checkpoint {file}" + _available(Path(path) / "models"))
    _, meta = read_safetensors(file, expect_format=MODEL_FORMAT, check_finite=False)
    if not isinstance(meta.get("model_spec"), dict):
        raise CheckpointError(f"{file} does not say how to rebuild its model (no model_spec)")
    return file, meta


def _available(folder: Path) -> str:
    names = sorted(
        p.name.removesuffix(".safetensors")
        for p in folder.glob("*.safetensors")
        if not p.name.endswith(".opt.safetensors")
    )
    return f" (checkpoints in {folder}: {', '.join(names)})" if names else ""


def checkpoint_learner(
    data: str | Path,
    model: str | Path,
    *,
    path: str | Path = ".",
    bs: int = 64,
    workers: int = 0,
    device: str = "auto",
    metrics: Sequence[str | Callable] = ("accuracy",),
    valid_pct: float | None = None,
    seed: int | None = None,
) -> Any:
    """Checkpoint ``model`` rebuilt alone, over ``data`` prepared as it was for training.

    The data is read at the checkpoint's input size, with its normalisation and task (a
    segmentation checkpoint reads a segmentation folder); ``valid_pct``/``seed`` repeat the fit's
    split. A checkpoint whose classes are not the data's is a :class:`CheckpointError`.
    """
    from learnkit.inference import load_learner

    file, meta = read_model_metadata(model, path)
    dev = resolve_device(device)
    bunch = load_data(
        data, bs=bs, size=int(meta.get("size") or 64), seed=seed, workers=workers, device=dev,
        valid_pct=valid_pct, normalize=meta.get("norm_stats") is not None,
        task=meta.get("task") or "classification",
    )  # fmt: skip
    _check_classes(file, meta.get("classes"), bunch.classes)
    metric_fns = resolve_metrics(metrics, task=meta.get("task") or "classification")
    return load_learner(file, path=path, data=bunch, metrics=metric_fns)


def validate(
    data: str | Path,
    model: str | Path,
    *,
    path: str | Path = ".",
    bs: int = 64,
    workers: int = 0,
    device: str = "auto",
    metrics: Sequence[str | Callable] = ("accuracy",),
    valid_pct: float | None = None,
    seed: int | None = None,
    plots: bool = False,
) -> dict[str, Any]:
    """Loss and metrics of checkpoint ``model`` on ``data``'s validation set.

    The model is rebuilt from the checkpoint alone (its zoo spec), and the data is prepared as it
    was for training (see :func:`checkpoint_learner`). With ``plots``, the confusion matrix and the
    top losses are also saved as PNGs under ``<path>/plots/``; ``plots`` in the result lists them.
    """
    from learnkit.checkpoint import resolve_checkpoint

    learn = checkpoint_learner(
        data, model, path=path, bs=bs, workers=workers, device=device, metrics=metrics,
        valid_pct=valid_pct, seed=seed,
    )  # fmt: skip
    valid_loss, *values = learn.validate()
    result = {"valid_loss": valid_loss}
    result.update(zip([getattr(m, "__name__", str(m)) for m in learn.metrics], values))
    result.update(items=len(learn.data.valid_ds), model=str(resolve_checkpoint(str(model), path)))
    if plots:
        interp = learn.interpret()
        result["plots"] = [str(interp.plot_confusion_matrix()), str(interp.plot_top_losses(9))]
    return result


def _check_classes(file: Path, saved: Sequence[str] | None, found: Sequence[Any] | None) -> None:
    if saved is None or found is None:
        return
    found = [str(c) for c in found]
    if list(saved) != found:
        raise CheckpointError(
            f"{file} was trained on {len(saved)} classes ({_short(saved)}); the data has {len(found)} "
            f"({_short(found)})"
        )


def _short(names: Sequence[str], n: int = 5) -> str:
    more = f", +{len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def summary(
    arch: str | None = None,
    model: str | Path | None = None,
    *,
    n_out: int = 10,
    size: int = 64,
    path: str | Path = ".",
) -> dict[str, Any]:
    """The layer table of ``arch`` (built for ``n_out`` outputs) or of checkpoint ``model``.

    Returns ``text`` (the table), ``layers`` (one dict per layer), the parameter counts and the
    layer groups.
    """
    import torch

    from learnkit.summary import layer_rows, model_summary
    from learnkit.vision.models import build_model, model_spec_for

    if (arch is None) == (model is None):
        raise UsageError("give exactly one of --arch or --model")
    if arch is not None:
        _check_arch(arch, size)
        spec, source = model_spec_for(arch, n_out), arch
    else:
        file, meta = read_model_metadata(model, path)
        spec, source, size = meta["model_spec"], str(file), int(meta.get("size") or size)
    net, groups = build_model(spec)
    view = _SummaryView(net, groups, size)
    total = sum(p.numel() for p in net.parameters())
    return {
        "model": source,
        "arch": spec.get("arch"),
        "n_out": spec.get("n_out"),
        "size": size,
        "params": total,
        "trainable_params": sum(p.numel() for p in net.parameters() if p.requires_grad),
        "layer_groups": len(groups),
        "layers": layer_rows(net, groups, torch.zeros(1, 3, size, size)),
        "text": model_summary(view),
    }


class _SummaryView:
    """What :func:`learnkit.summary.model_summary` reads of a Learner, for a model without data."""

    def __init__(self, model: Any, layer_groups: list[Any], size: int) -> None:
        import torch

        self.model, self.layer_groups, self.opt = model, layer_groups, None
        self.data = type("Data", (), {"size": size})()
        self.loss_func = torch.nn.CrossEntropyLoss()


def write_sample(name: str, folder: str | Path) -> dict[str, Any]:
    """Write the built-in sample ``name`` (``shapes`` or ``sample:shapes``) into ``folder``."""
    from learnkit.data.samples import SAMPLES
    from learnkit.data.samples import write_sample as write

    name = name.removeprefix("sample:")
    if name not in SAMPLES:
        close = difflib.get_close_matches(name, SAMPLES, n=2, cutoff=0.5)
        hint = f"did you mean: {', '.join(close)}?" if close else f"known: {', '.join(SAMPLES)}"
        raise UsageError(f"unknown sample '{name}'; {hint}")
    out = write(name, folder)
    images = sum(1 for p in Path(out).rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return {"sample": name, "folder": str(out), "images": images}


def versions() -> dict[str, Any]:
    """learnkit, torch, torchvision and Python versions, and the accelerators torch sees."""
    import torch

    try:
        import torchvision

        vision = torchvision.__version__
    except ImportError:  # pragma: no cover - a dependency, but say so rather than fail
        vision = None
    return {
        "learnkit": __version__,
        "torch": torch.__version__,
        "torchvision": vision,
        "python": platform.python_version(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "mps": torch.backends.mps.is_available(),
    }
