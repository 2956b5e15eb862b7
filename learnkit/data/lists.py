"""Labels for fastai v1's list-based constructors of ``ImageDataBunch`` (``from_lists``,
``from_name_func``, ``from_name_re``, ``from_df``; see :mod:`learnkit.data.folder`): from a
function, a regular expression or a DataFrame's columns, then encoded as class indices (a list of
them per image with ``label_delim``, multi-label as ``from_csv``), the classes sorted as v1 sorts
them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from learnkit.class_names import check_class_names
from learnkit.errors import DataError, UsageError


def encode_labels(
    path: Path, fnames: Sequence[str | Path], labels: Sequence[Any], classes: Sequence[str] | None,
    label_delim: str | None, where: str = "the labels given",
) -> tuple[list[Path], list[Any], list[str]]:  # fmt: skip
    """``(files, targets, class names)``: files under ``path`` (unless absolute), class indices (a
    list of them per file with ``label_delim``), the classes sorted unless given.

    The class names follow the rule of every other reader (:mod:`learnkit.class_names`, exit 3
    naming ``where``): no name twice (two labels that read as the same name, ``1`` and ``"1"``,
    included), none empty or missing (``None``, NaN), and at least 2 classes unless ``classes``
    gives them.
    """
    files = [Path(f) if Path(f).is_absolute() else path / f for f in fnames]
    if len(files) != len(labels):
        raise UsageError(f"{len(files)} file names but {len(labels)} labels")
    if not files:
        raise DataError(f"no images to make a data set of (in {path})")
    for f, y in zip(files, labels, strict=True):
        if _missing(y):
            raise DataError(f"{where}: no label for {f} ({y!r})")
    rows = [_split_label(y, label_delim) for y in labels]
    if classes is not None:
        names = [str(c) for c in classes]
        check_class_names(names, f"{where} (the classes given)")
    else:
        names = sorted({c for row in rows for c in row})
        _check_distinct(labels, label_delim, where)
        check_class_names(names, where)
        if len(names) < 2:
            only = f", '{names[0]}'," if names else ""
            raise DataError(f"only one class{only} in {where}: a classifier needs at least 2 classes")
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({c for row in rows for c in row} - set(index))
    if unknown:
        raise DataError(f"label '{unknown[0]}' is not one of the classes {names}")
    ys = [[index[c] for c in row] if label_delim is not None else index[row[0]] for row in rows]
    return files, ys, names


def _missing(label: Any) -> bool:
    """A missing label: ``None``, a float NaN (what pandas puts in an empty cell), pandas' NA/NaT."""
    if label is None or type(label).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(label, float) and label != label


def _check_distinct(labels: Sequence[Any], delim: str | None, where: str) -> None:
    """A :class:`DataError` when two different labels read as the same class name (``1`` and
    ``"1"``): the classes would merge without a word."""
    seen: dict[str, Any] = {}
    for label in labels if delim is None else []:
        name = str(label)
        first = seen.setdefault(name, label)
        if first is not label and first != label:
            raise DataError(
                f"{where}: class names cannot be used (the labels {first!r} and {label!r} both read "
                f"as the class {name!r})"
            )


def _split_label(label: Any, delim: str | None) -> list[str]:
    if delim is None:
        return [str(label)]
    return [c for c in str(label).split(delim) if c]


def labels_from_func(fnames: Sequence[str | Path], label_func: Callable[[Any], Any]) -> list[Any]:
    """v1's ``from_name_func``: ``label_func(file)`` for each file."""
    return [label_func(f) for f in fnames]


def labels_from_re(fnames: Sequence[str | Path], pat: str | re.Pattern) -> list[str]:
    """v1's ``from_name_re``: the first group of ``pat`` searched in each file's full path."""
    regex = re.compile(pat)
    out = []
    for f in fnames:
        match = regex.search(str(f))
        if match is None:
            raise DataError(f"the pattern {regex.pattern!r} does not match {f}")
        out.append(match.group(1))
    return out


def lists_from_df(
    df: Any, folder: str | None, fn_col: int | str, label_col: int | str, suffix: str
) -> tuple[list[str], list[Any]]:
    """v1's ``from_df``: file names ``folder/<fn_col><suffix>`` and the ``label_col`` labels of a
    pandas DataFrame (a column by position or name)."""

    def column(col: int | str) -> list[Any]:
        return list(df.iloc[:, col] if isinstance(col, int) else df[col])

    names = [f"{folder}/{n}{suffix}" if folder else f"{n}{suffix}" for n in column(fn_col)]
    return names, column(label_col)
