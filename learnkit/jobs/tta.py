"""The job ``learnkit tta`` runs: a checkpoint's loss and metrics on a data set, without and with TTA.

One pass over the validation set gives both (see :func:`learnkit.tta.tta_report`). The result puts
the TTA figures on top, named as ``validate`` names them (``valid_loss``, ``accuracy``), so a
pipeline reads them the same way, and both sets side by side under ``plain`` and ``tta``.

Example:
    >>> from learnkit.jobs.tta import tta_scores
    >>> result = tta_scores("data", "best", path="run")  # doctest: +SKIP
    >>> result["plain"]["accuracy"], result["tta"]["accuracy"]  # doctest: +SKIP
    (0.91, 0.93)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from learnkit.jobs import evaluate


def tta_scores(
    data: str | Path,
    model: str | Path,
    *,
    path: str | Path = ".",
    beta: float = 0.4,
    scale: float = 1.35,
    bs: int = 64,
    workers: int = 0,
    device: str = "auto",
    metrics: Sequence[str | Callable] = ("accuracy",),
    valid_pct: float | None = None,
    seed: int | None = None,
    flip: bool | None = None,
    allow_changed_data: bool = False,
) -> dict[str, Any]:
    """Loss and metrics of checkpoint ``model`` on ``data``'s validation set, without and with TTA.

    Args:
        data, model, path, bs, workers, device, valid_pct, seed: as for
            :func:`learnkit.jobs.evaluate.validate` (use the fit's ``valid_pct``/``seed``).
        beta: weight of the plain prediction in the TTA mix (0..1).
        scale: the zoom before the four corner crops (>= 1).
        allow_changed_data: go on (with a warning) when the data changed since the fit.
        flip: also average the flipped crops; ``None`` follows the training: flips only for a
            model trained with flip augmentation (see :func:`trained_with_flips`).
        metrics: metric names from :mod:`learnkit.metrics`.

    Returns:
        The TTA ``valid_loss`` and metrics on top; ``plain`` and ``tta`` (each ``valid_loss`` and the
        metrics); ``items``, ``beta``, ``scale`` and ``model`` (the checkpoint file).
    """
    from learnkit.checkpoint import resolve_checkpoint
    from learnkit.tta import tta_report

    learn = evaluate.checkpoint_learner(
        data, model, path=path, bs=bs, workers=workers, device=device, metrics=metrics,
        valid_pct=valid_pct, seed=seed, allow_changed_data=allow_changed_data,
    )  # fmt: skip
    _, meta = evaluate.read_model_metadata(model, path)
    flip = trained_with_flips(meta) if flip is None else flip
    report = tta_report(learn, beta=beta, scale=scale, flip=flip)
    plain, tta = _named(report["plain"]), _named(report["tta"])
    return {
        "split": evaluate.describe_split(meta, valid_pct, seed, learn.data.changed_since_fit),
        **tta,
        "plain": plain,
        "tta": tta,
        "items": report["items"],
        "beta": beta,
        "scale": scale,
        "flip": flip,
        "model": str(resolve_checkpoint(str(model), path)),
    }


def trained_with_flips(meta: Mapping[str, Any]) -> bool:
    """Whether the checkpoint's model was trained with left-right flips, from the run's config
    (metadata ``config``, read as any RunConfig is: :meth:`RunConfig.from_dict`): its augmentation's
    ``flip``. A checkpoint with no usable config, or one from before the augmentation presets (no
    ``data.aug``), trained with learnkit's former default, which flipped."""
    from learnkit.errors import UsageError
    from learnkit.jobs.config import RunConfig

    config = meta.get("config")
    data = config.get("data") if isinstance(config, Mapping) else None
    if not isinstance(data, Mapping) or "aug" not in data:
        return True
    try:
        return RunConfig.from_dict(dict(config)).data.augment().settings().flip
    except UsageError:
        return True


def _named(scores: Mapping[str, float]) -> dict[str, float]:
    """The report's ``loss`` called ``valid_loss``, as ``validate`` and ``fit`` call it."""
    return {("valid_loss" if k == "loss" else k): v for k, v in scores.items()}
