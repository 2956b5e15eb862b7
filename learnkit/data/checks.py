"""Refuse degenerate classification data before any training: one line each, with the fix.

A run over one class reports loss 0 and accuracy 1.000 and proves nothing; a class without
training images cannot be learnt; an empty validation set scores nothing. These checks run where
the folder bunch is built (:mod:`learnkit.data.folder`) and raise :class:`DataError` (exit 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from learnkit.data.images import is_image_file
from learnkit.errors import DataError


def _subfolders_with_images(folder: Path) -> list[str]:
    """Names of the folders right under ``folder`` that hold image files (at any depth)."""
    names = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if any(is_image_file(f) for f in sub.rglob("*")):
            names.append(sub.name)
    return names


def _short_list(names: Sequence[str], n: int = 4) -> str:
    shown = ", ".join(names[:n])
    return shown + (", ..." if len(names) > n else "")


def check_enough_classes(src: Path, names: Sequence[str], *, split: bool) -> None:
    """At least two classes, else a :class:`DataError` naming the class found and the likely mistake.

    Args:
        src: the folder whose subfolders are the classes.
        names: the classes found there.
        split: whether ``src`` is split by ``valid_pct`` (then the fix is another DATA folder).
    """
    if len(names) >= 2:
        return
    only = names[0] if names else None
    if only is not None:
        inner = _subfolders_with_images(src / only)
        if len(inner) >= 2:
            fix = (
                f"use {src / only} as DATA"
                if split
                else f"move the class folders of {src / only} up into {src}"
            )
            raise DataError(
                f"only one class, '{only}', in {src}: its images sit in class folders "
                f"({_short_list(inner)}), so the data is one folder too deep: {fix}"
            )
        raise DataError(
            f"only one class, '{only}', in {src}: a classifier needs at least 2 class folders "
            f"({src}/<class>/<images>)"
        )
    raise DataError(f"no class folders with images in {src} (expected {src}/<class>/<images>)")


def check_split(
    classes: Sequence[str],
    train_labels: Sequence[int],
    valid_labels: Sequence[int],
    *,
    train_dir: Path,
    valid_what: str,
    split: bool = False,
) -> None:
    """Every class has training images and the validation set is not empty.

    Args:
        classes: the class names in label order.
        train_labels, valid_labels: the labels of the two sets.
        train_dir: where the training images of a class live (named in the message).
        valid_what: how the validation set was made, for the message (``"--valid-pct 0.2"`` or a
            folder).
        split: the sets come from a ``valid_pct`` split (the fix is then another fraction).
    """
    if not valid_labels:
        raise DataError(
            f"the validation set ({valid_what}) is empty: put images in its class folders, "
            "or split the training images with --valid-pct"
        )
    seen = set(train_labels)
    empty = [name for i, name in enumerate(classes) if i not in seen]
    if not empty:
        return
    if split:
        raise DataError(
            f"class '{empty[0]}' has no training images after the split ({valid_what}): add images "
            f"to {train_dir / empty[0]}, or lower --valid-pct"
        )
    raise DataError(
        f"class '{empty[0]}' has no training images ({train_dir / empty[0]}): add some, "
        f"or remove it from the validation set ({valid_what})"
    )
