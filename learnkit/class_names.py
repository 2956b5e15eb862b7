"""One rule for class names, applied where data is read and where a checkpoint is read.

Whatever the data gives as classes (class folders, ``labels.csv`` labels, ``codes.txt`` lines) is
checked by :func:`class_names_problem` before training, and a checkpoint's ``classes`` field by the
same function when it is read: a model the trainer wrote is always one its reader accepts.

The rule: at most :data:`MAX_CLASSES` names, each a non-empty string of at most
:data:`MAX_CLASS_NAME` characters, :data:`MAX_CLASS_CHARS` characters in all, no name twice. Any
other character (spaces, ``$``, quotes, non-ASCII) is allowed. This module imports no torch.

Example:
    >>> class_names_problem(["cat", "dog", "cat"])
    "names repeat: 'cat'"
    >>> class_names_problem(["a $x$ b", "é" * 2000]) is None
    True
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from learnkit.errors import DataError

MAX_CLASSES = 100_000
MAX_CLASS_NAME = 4096
MAX_CLASS_CHARS = 1_000_000


def class_names_problem(names: Any) -> str | None:
    """What is wrong with ``names`` as a list of class names, or None when it may be used."""
    if not isinstance(names, list | tuple):
        return f"must be a list of strings, not {type(names).__name__}"
    if len(names) > MAX_CLASSES:
        return f"{len(names)} classes, more than the {MAX_CLASSES} allowed"
    total = 0
    for name in names:
        if not isinstance(name, str):
            return f"must be a list of strings, not a list holding {type(name).__name__}"
        if not name:
            return "a class name is empty"
        if len(name) > MAX_CLASS_NAME:
            return f"a class name of {len(name)} characters, more than the {MAX_CLASS_NAME} allowed"
        total += len(name)
    if total > MAX_CLASS_CHARS:
        return f"class names of {total} characters in all, more than the {MAX_CLASS_CHARS} allowed"
    if len(set(names)) != len(names):
        twice = [n for n, k in Counter(names).items() if k > 1]
        shown = ", ".join(_short(n) for n in twice[:3]) + (", ..." if len(twice) > 3 else "")
        return f"names repeat: {shown}"
    return None


def check_class_names(names: Any, where: str) -> None:
    """A :class:`DataError` (exit 3) naming ``where`` when ``names`` break the rule."""
    problem = class_names_problem(names)
    if problem is not None:
        raise DataError(f"{where}: class names cannot be used ({problem})")


def _short(name: str, n: int = 40) -> str:
    return repr(name if len(name) <= n else name[:n] + "...")
