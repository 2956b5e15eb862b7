"""The job ``learnkit predict`` runs: a checkpoint and image items in, one plain row per image out.

The checkpoint is loaded at once (so a missing or broken one fails before any output); the images
are predicted lazily, a batch at a time, so rows can be printed while the rest is still running.
A classifier's row names the label and its probability (and the top ``k`` on request); a
segmentation model's row names the mask PNG it wrote (and the colour overlay). An unreadable
image gives a row with an ``error`` instead, and the run goes on.

Example:
    >>> from learnkit.jobs.predict import predict_files
    >>> run = predict_files(["photos/"], "best", path="run", topk=2)  # doctest: +SKIP
    >>> for row in run.rows: print(row["path"], row.get("label"), row.get("error"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from learnkit.errors import DataError

if TYPE_CHECKING:
    from learnkit.learner import Learner

PREDICTIONS = "predictions"  # masks go to <path>/predictions/ unless told otherwise


@dataclass
class PredictionRun:
    """What :func:`predict_files` returns: the model's task and its rows, computed as they are read.

    Attributes:
        task: ``"classification"``, ``"multi-label"`` (rows also hold ``labels``, the classes
            above the checkpoint's threshold) or ``"segmentation"``, known before any row.
        classes: the checkpoint's class names (``None`` when it has none).
        topk: how many ``(label, probability)`` pairs a classification row carries.
        rows: one dict per image, in order: ``path`` and either the prediction or ``error``.
    """

    task: str
    classes: list[str] | None
    topk: int
    rows: Iterator[dict[str, Any]]


def predict_files(
    items: Sequence[str | Path],
    model: str | Path,
    *,
    path: str | Path = ".",
    bs: int = 64,
    topk: int = 1,
    tta: bool = False,
    device: str = "auto",
    out: str | Path | None = None,
    overlay: bool = False,
    stdin: Iterable[str] | None = None,
    null: bool = False,
) -> PredictionRun:
    """Predict the images that ``items`` name with checkpoint ``model``.

    Args:
        items: image files, folders (searched at any depth), glob patterns, or ``-`` for one path a
            line from ``stdin`` (default ``sys.stdin``); see :func:`learnkit.inference.expand_items`.
        model: a checkpoint name under ``<path>/models`` or a ``.safetensors`` file.
        bs: images per batch.
        topk: classification: also give the ``k`` most likely labels (``topk`` in the row).
        tta: average with the 8 test-time-augmentation versions (see :mod:`learnkit.tta`).
        device: ``auto``, ``cpu``, ``cuda[:i]`` or ``mps``.
        out: segmentation: the folder for the mask PNGs (default ``<path>/predictions``).
        overlay: segmentation: also write the picture with the mask's colours blended in.
        null: ``-`` reads NUL-separated paths (``find -print0``) instead of lines.

    Returns:
        A :class:`PredictionRun`; iterating its ``rows`` runs the model. When the items name no
        file at all, iterating raises :class:`~learnkit.errors.DataError` after the last row.

    Raises:
        CheckpointError: no such checkpoint, or one that cannot rebuild its model.
    """
    from learnkit.jobs.setup import resolve_device
    from learnkit.vision.learners import load_learner

    learn = load_learner(model, path=path, device=resolve_device(device))
    task = getattr(learn.data, "task", None) or "classification"
    if task == "classification" and getattr(learn.data, "multi_label", False):
        task = "multi-label"  # rows also carry ``labels``: every class above the threshold
    classes = None if learn.data.classes is None else [str(c) for c in learn.data.classes]
    out_dir = Path(path) / PREDICTIONS if out is None else Path(out)
    rows = _rows(learn, items, bs, topk, tta, out_dir, overlay, stdin, null)
    return PredictionRun(task=task, classes=classes, topk=topk, rows=rows)


def _without_outputs(paths: Iterable[Path], masks: _MaskWriter, skipped: list[Path]) -> Iterator[Path]:
    """``paths`` less the masks and overlays (this run's, or any named so): not pictures to predict."""
    for path in paths:
        if masks.is_output(Path(path)):
            skipped.append(Path(path))
        else:
            yield path


def _rows(
    learn: Learner,
    items: Sequence[str | Path],
    bs: int,
    topk: int,
    tta: bool,
    out_dir: Path,
    overlay: bool,
    stdin: Iterable[str] | None,
    null: bool = False,
) -> Iterator[dict[str, Any]]:
    from learnkit.inference import expand_items, predict_images

    masks = _MaskWriter(out_dir, overlay)
    count = 0
    paths: Iterable[Path] = expand_items(items, stdin, null=null)
    skipped: list[Path] = []
    if getattr(learn.data, "task", None) == "segmentation":
        paths = _without_outputs(paths, masks, skipped)
    for pred in predict_images(learn, paths, bs=bs, topk=topk, tta=tta):
        count += 1
        if pred.ok and pred.mask is not None:
            yield masks.write(pred)
        else:
            yield pred.to_dict()
    if skipped:
        warnings.warn(
            f"left out {len(skipped)} file(s) named like predicted masks (*.mask.png, *.overlay.png), "
            f"e.g. {skipped[0]}",
            stacklevel=2,
        )
    if count == 0:
        named = ", ".join(str(i) for i in items)
        raise DataError(f"no images found in {named}" if named else "no images given")


OUTPUT_SUFFIXES = (".mask.png", ".overlay.png")
"""Names of the files segmentation predictions write; such files are never taken as pictures."""


class _MaskWriter:
    """Writes each prediction's mask as ``<out>/<image stem>.mask.png``, never over an existing file.

    The ``.mask`` suffix keeps a mask from overwriting its image when ``out`` is the image's own
    folder; images with the same stem (``a/1.png``, ``b/1.png``) get ``1.mask.png``, ``1-2.mask.png``.
    A name already taken on disk (a user's own ``a.mask.png``, or an earlier run's) is never written
    over: the next free name is used, and a warning says so. Files are created exclusively, so not
    even a file appearing meanwhile (or a planted symlink) is overwritten.
    """

    def __init__(self, out_dir: Path, overlay: bool) -> None:
        self.out_dir, self.overlay = out_dir, overlay
        self.used: set[str] = set()
        self.written: set[Path] = set()

    def _taken(self, name: str) -> bool:
        files = [self.out_dir / f"{name}.mask.png"]
        if self.overlay:
            files.append(self.out_dir / f"{name}.mask.overlay.png")
        return name in self.used or any(os.path.lexists(f) for f in files)

    def _dest(self, image: str) -> Path:
        stem = Path(image).stem or "image"
        name, n = stem, 1
        while self._taken(name):
            n += 1
            name = f"{stem}-{n}"
        self.used.add(name)
        if n > 1 and stem not in self.used - {name}:
            warnings.warn(
                f"{self.out_dir / (stem + '.mask.png')} exists; left as it is, writing "
                f"{self.out_dir / (name + '.mask.png')} instead",
                stacklevel=2,
            )
        return self.out_dir / f"{name}.mask.png"

    def write(self, pred: Any) -> dict[str, Any]:
        from learnkit.show import save_mask

        for _ in range(100):  # a file created by someone else meanwhile: take the next free name
            dest = self._dest(pred.path)
            try:
                mask_file, overlay_file = save_mask(
                    pred.mask, dest, image=pred.path if self.overlay else None, exclusive=True
                )
                break
            except FileExistsError:
                continue
        else:
            raise DataError(f"no free name for the mask of {pred.path} in {self.out_dir}")
        self.written.update(p.resolve() for p in (mask_file, overlay_file) if p is not None)
        row = {"path": pred.path, "mask": str(mask_file)}
        if overlay_file is not None:
            row["overlay"] = str(overlay_file)
        details = pred.to_dict()
        row.update({k: v for k, v in details.items() if k != "path"})
        return row

    def is_output(self, path: Path) -> bool:
        """True for a file this writer wrote, or one named like a mask or overlay."""
        return path.name.lower().endswith(OUTPUT_SUFFIXES) or path.resolve() in self.written
