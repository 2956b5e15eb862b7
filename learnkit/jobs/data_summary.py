"""What a fit learns from, said before it trains: classes and image counts, skipped images, the
split, batches per epoch, and warnings for a training set too small for its batch size or a 1cycle
too short to have a shape.

Example:
    >>> info = describe_data(learn.data, epochs=3, schedule="one_cycle")  # doctest: +SKIP
    >>> info["lines"][0]  # doctest: +SKIP
    'data: 200 train / 60 valid images, 2 classes, split: the valid/ folder; 4 batches of 64 an epoch'
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

SKIPPED_FILE = "skipped.txt"  # in the run folder: every image left out, with the reason
MIN_CYCLE_STEPS = 10  # a 1cycle epoch of fewer steps than this is warned about
SHOWN_CLASSES = 12  # classes named one by one on the summary line; more are summed up


def _split_text(split: Any) -> str:
    if not isinstance(split, dict):
        return "as given"
    if split.get("kind") == "pct":
        return f"{split.get('valid_pct'):g} of the images held out at random (seed {split.get('seed')})"
    if split.get("kind") == "folder":
        return f"the {split.get('name') or 'valid'}/ folder"
    if split.get("kind") == "column":
        return "the is_valid column"
    return ", ".join(f"{k} {v}" for k, v in split.items())


def _class_counts(ds: Any, classes: list[str]) -> Counter:
    counts: Counter = Counter()
    for label in getattr(ds, "labels", None) or []:
        for c in label if isinstance(label, list) else [label]:
            if 0 <= int(c) < len(classes):
                counts[classes[int(c)]] += 1
    return counts


def describe_data(data: Any, *, epochs: int = 1, schedule: str = "fit") -> dict[str, Any]:
    """The summary of ``data`` (an ``ImageDataBunch`` or ``SegmentationDataBunch``) for a run of
    ``epochs`` with ``schedule``: ``lines`` to show, ``warnings``, ``skipped`` (``(path, reason)``
    of every image left out) and the figures (``train``, ``valid``, ``batches_per_epoch``, ``bs``)."""
    train_ds, valid_ds = data.train_ds, getattr(data, "valid_ds", None)
    n_train = len(train_ds) if train_ds is not None else 0
    n_valid = len(valid_ds) if valid_ds is not None else 0
    train_dl = data.train_dl
    bs = int(getattr(train_dl, "batch_size", None) or 0)
    try:
        batches = len(train_dl)
    except TypeError:
        batches = -(-n_train // bs) if bs else 0
    classes = [str(c) for c in (getattr(data, "classes", None) or [])]
    task = getattr(data, "task", "classification")
    split = _split_text(getattr(data, "valid_split", None))
    lines = [
        f"data: {n_train} train / {n_valid} valid images, {len(classes)} classes, split: {split}; "
        f"{batches} batch{'es' if batches != 1 else ''} of {bs} an epoch"
    ]
    if classes and task != "segmentation":
        tr, va = _class_counts(train_ds, classes), _class_counts(valid_ds, classes)
        shown = [f"{c} {tr[c]}/{va[c]}" for c in classes[:SHOWN_CLASSES]]
        if len(classes) > SHOWN_CLASSES:
            shown.append(f"... {len(classes) - SHOWN_CLASSES} more")
        lines.append("classes (train/valid images): " + ", ".join(shown))
    elif classes:
        lines.append("classes (mask codes): " + ", ".join(classes))
    skipped = [*getattr(train_ds, "skipped", []), *(getattr(valid_ds, "skipped", []) if valid_ds else [])]
    warnings = []
    if bs and n_train < bs:
        warnings.append(
            f"the training set ({n_train} images) is smaller than one batch (--bs {bs}): every epoch is "
            "one step; use a smaller --bs"
        )
    elif schedule == "one_cycle" and batches < MIN_CYCLE_STEPS:
        warnings.append(
            f"{batches} step{'s' if batches != 1 else ''} an epoch ({epochs * batches} in the whole 1cycle): "
            f"the cycle's warm-up and annealing get few steps; a smaller --bs or more epochs give it "
            f"{MIN_CYCLE_STEPS}+ an epoch"
        )
    return {
        "lines": lines,
        "warnings": warnings,
        "skipped": [(str(p), str(r)) for p, r in skipped],
        "train": n_train,
        "valid": n_valid,
        "batches_per_epoch": batches,
        "bs": bs,
    }


def write_skipped(skipped: list[tuple[str, str]], folder: str | Path) -> Path | None:
    """Write every skipped image and its reason to ``FOLDER/skipped.txt`` (None when there is none)."""
    if not skipped:
        return None
    from learnkit.atomic import write_atomically

    file = Path(folder) / SKIPPED_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{path}\t{reason}\n" for path, reason in skipped)
    write_atomically(file, lambda f: f.write(text), binary=False)
    return file


__all__ = ["describe_data", "write_skipped"]
