"""The jobs of ``learnkit validate`` (and the checkpoint learners ``tta`` uses): a checkpoint rebuilt
alone, over data prepared as it was for training.

Example::

    from learnkit.jobs.evaluate import validate
    validate("sample:shapes", "last", path="run")["accuracy"]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learnkit.errors import CheckpointError
from learnkit.jobs import setup


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
    dev = setup.resolve_device(device)
    bunch = setup.load_data(
        data, bs=bs, size=int(meta.get("size") or 64), seed=seed, workers=workers, device=dev,
        valid_pct=valid_pct, normalize=meta.get("norm_stats") is not None,
        task=meta.get("task") or "classification",
    )  # fmt: skip
    _check_classes(file, meta.get("classes"), bunch.classes)
    metric_fns = setup.resolve_metrics(metrics, task=meta.get("task") or "classification")
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
