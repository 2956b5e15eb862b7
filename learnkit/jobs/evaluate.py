"""The jobs of ``learnkit validate`` (and the checkpoint learners ``tta`` uses): a checkpoint rebuilt
alone, over data prepared as it was for training.

Example::

    from learnkit.jobs.evaluate import validate
    validate("sample:shapes", "last", path="run")["accuracy"]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.data.fingerprint import SPLITS, check_unchanged
from learnkit.errors import CheckpointError, DataError, UsageError
from learnkit.jobs import setup

if TYPE_CHECKING:
    from learnkit.learner import Learner


class ChangedDataWarning(UserWarning):
    """The data differs from what the checkpoint's fit saw, and the caller allowed it."""


def read_model_metadata(model: str | Path, path: str | Path = ".") -> tuple[Path, dict[str, Any]]:
    """The checkpoint file named by ``model`` (a name under ``path/models`` or a file) and its metadata.

    Raises :class:`CheckpointError` for a missing file, a file that is not a learnkit model
    checkpoint, or one without what rebuilds its model.
    """
    from learnkit.checkpoint import read_model_header, resolve_checkpoint

    file = resolve_checkpoint(str(model), path)
    if not file.is_file():
        raise CheckpointError(f"no checkpoint {file}" + _available(Path(path) / "models"))
    _, meta = read_model_header(file)  # the schema, and the spec's model (on `meta`) fits the file
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
    allow_changed_data: bool = False,
) -> Learner:
    """Checkpoint ``model`` rebuilt alone, over ``data`` prepared as it was for training.

    The data is read at the checkpoint's input size, with its own normalisation statistics (never
    ImageNet's unless those are what it recorded) and task (a
    segmentation checkpoint reads a segmentation folder); ``valid_pct``/``seed`` repeat the fit's
    split. A checkpoint whose classes are not the data's is a :class:`DataError`; so is data that
    changed since the fit (its ``data_fingerprint``; both splits when evaluating on the fit's own
    split, else the data as a whole), unless ``allow_changed_data``: then a
    :class:`ChangedDataWarning`, and the changes are kept as ``learn.data.changed_since_fit``.
    """
    from learnkit.vision.learners import load_learner

    file, meta = read_model_metadata(model, path)
    _check_task(file, meta.get("task") or "classification", data)
    valid_pct, seed = fit_split(meta, valid_pct, seed)
    dev = setup.resolve_device(device)
    bunch = setup.load_data(
        data, bs=bs, size=int(meta.get("size") or 64), seed=seed, workers=workers, device=dev,
        valid_pct=valid_pct, normalize=meta.get("norm_stats") is not None,
        norm_stats=meta.get("norm_stats"), task=meta.get("task") or "classification",
        label_delim=_label_delim(meta),
    )  # fmt: skip
    check_classes(file, meta.get("classes"), bunch.classes)
    own = is_own_split(meta, valid_pct, seed, fitted=True)
    changes = check_unchanged(
        meta.get("data_fingerprint"), bunch, allow=allow_changed_data, what=str(file),
        splits=SPLITS if own else ("all",),
    )  # fmt: skip
    bunch.changed_since_fit = changes
    if changes:
        message = f"the data changed since {file} was trained: {'; '.join(changes)}"
        warnings.warn(message, ChangedDataWarning, stacklevel=2)
    if meta.get("multi_label"):
        bunch.thresh = float(meta.get("thresh", 0.5))
        if list(metrics) == ["accuracy"]:
            from learnkit.metrics import MULTI_LABEL_METRICS

            metrics = MULTI_LABEL_METRICS
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
    allow_changed_data: bool = False,
) -> dict[str, Any]:
    """Loss and metrics of checkpoint ``model`` on ``data``'s validation set (``allow_changed_data``:
    see :func:`checkpoint_learner`).

    The model is rebuilt from the checkpoint alone (its zoo spec), and the data is prepared as it
    was for training (see :func:`checkpoint_learner`). With ``plots``, the confusion matrix and the
    top losses are also saved as PNGs under ``<path>/plots/``; ``plots`` in the result lists them.
    """
    from learnkit.checkpoint import resolve_checkpoint

    learn = checkpoint_learner(
        data, model, path=path, bs=bs, workers=workers, device=device, metrics=metrics,
        valid_pct=valid_pct, seed=seed, allow_changed_data=allow_changed_data,
    )  # fmt: skip
    valid_loss, *values = learn.validate()
    _, meta = read_model_metadata(model, path)
    result = {"valid_loss": valid_loss}
    result.update(zip([getattr(m, "__name__", str(m)) for m in learn.metrics], values))
    result.update(items=len(learn.data.valid_ds), model=str(resolve_checkpoint(str(model), path)))
    if plots and getattr(learn.data, "multi_label", False):
        raise UsageError("--plots (confusion matrix, top losses) is for single-label classification")
    result["split"] = describe_split(meta, valid_pct, seed, learn.data.changed_since_fit)
    if plots:
        interp = learn.interpret()
        result["plots"] = [str(interp.plot_confusion_matrix()), str(interp.plot_top_losses(9))]
    return result


def _label_delim(meta: dict[str, Any]) -> str | None:
    """The ``label_delim`` a multi-label checkpoint was trained with (from its run's config)."""
    if not meta.get("multi_label"):
        return None
    config = meta.get("config") or {}
    return (config.get("data") or {}).get("label_delim") or " "


def fit_split(meta: dict, valid_pct: float | None, seed: int | None) -> tuple[float | None, int | None]:
    """The split to evaluate on: the one the checkpoint records (``valid_split``), unless the
    caller asks for another (``valid_pct`` given; ``seed`` alone keeps the recorded fraction).

    A checkpoint without the record (older ones) takes the arguments as they are.
    """
    split = meta.get("valid_split")
    if not isinstance(split, dict) or split.get("kind") != "pct" or valid_pct is not None:
        return valid_pct, seed
    return float(split["valid_pct"]), int(split["seed"]) if seed is None else seed


def is_own_split(meta: dict, valid_pct: float | None, seed: int | None, *, fitted: bool = False) -> bool:
    """True when an evaluation with these arguments uses the split the checkpoint records (the
    split rule; whether the data is the same is :mod:`learnkit.data.fingerprint`'s question).
    ``fitted``: ``valid_pct``/``seed`` already went through :func:`fit_split`."""
    split = meta.get("valid_split")
    if not isinstance(split, dict):
        return False
    used_pct, used_seed = (valid_pct, seed) if fitted else fit_split(meta, valid_pct, seed)
    if split.get("kind") == "pct":
        return (used_pct, used_seed) == (split.get("valid_pct"), split.get("seed"))
    return split.get("kind") in ("folder", "column") and used_pct is None


def describe_split(meta: dict, valid_pct: float | None, seed: int | None, changes: Sequence[str] = ()) -> str:
    """One line saying which validation set an evaluation uses, and whether it is the fit's
    (never when ``changes``, the data's changes since the fit, are not empty)."""
    split = meta.get("valid_split")
    used_pct, used_seed = fit_split(meta, valid_pct, seed)
    if used_pct is None and isinstance(split, dict) and split.get("kind") == "column":
        what = f"labels.csv's '{split.get('name') or 'is_valid'}' column"
    elif used_pct is None:
        what = (
            f"the '{split.get('name') or 'valid'}' folder" if isinstance(split, dict) else "the valid folder"
        )
    else:
        what = f"--valid-pct {used_pct:g} --seed {0 if used_seed is None else used_seed}"
    if not isinstance(split, dict):
        return f"validating on {what} (the checkpoint does not record its fit's split)"
    if changes:
        return f"validating on {what}: not the fit's own split, the data changed since ({'; '.join(changes)})"
    if split.get("kind") == "pct" and (used_pct, used_seed) == (split["valid_pct"], split["seed"]):
        return f"validating on the fit's own split ({what}, as the checkpoint records)"
    if split.get("kind") in ("folder", "column") and used_pct is None:
        return f"validating on the fit's own split ({what})"
    return f"validating on {what}, as asked: not the fit's own split"


def _check_task(file: Path, task: str, data: str | Path) -> None:
    """A segmentation checkpoint needs a segmentation folder and a classifier class folders: say
    which is which, rather than blame a missing ``images`` or ``train`` folder."""
    from learnkit.data.samples import resolve_data

    folder = Path(resolve_data(str(data)))
    if not folder.is_dir():
        return  # the data loader says what is wrong with it
    looks_seg = (folder / "images").is_dir() and (folder / "masks").is_dir()
    if task == "segmentation" and not looks_seg:
        raise DataError(
            f"{file} is a segmentation checkpoint (a U-Net); {data} is not a segmentation folder "
            "(images/, masks/, codes.txt): give one, or a classification checkpoint"
        )
    if task != "segmentation" and looks_seg:
        raise DataError(
            f"{file} is a classification checkpoint; {data} is a segmentation folder (images/, "
            "masks/): give classification data (<class>/ folders), or a U-Net checkpoint"
        )


def check_classes(file: Path, saved: Sequence[str] | None, found: Sequence[Any] | None) -> None:
    """The data's classes must be the checkpoint's, in the same order: else exit 3 naming them."""
    if saved is None or found is None:
        return
    found = [str(c) for c in found]
    if list(saved) == found:
        return
    missing = [c for c in saved if c not in found]
    extra = [c for c in found if c not in saved]
    if missing or extra:
        parts = ([f"missing {_short(missing)}"] if missing else []) + (
            [f"not in the checkpoint: {_short(extra)}"] if extra else []
        )
        diff = "; ".join(parts)
    else:
        diff = "the same names in another order"
    raise DataError(f"the data's classes differ from those of {file} ({len(saved)}: {_short(saved)}): {diff}")


def _short(names: Sequence[str], n: int = 5) -> str:
    more = f", +{len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more
