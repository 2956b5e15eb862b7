"""``listify``: fastai v1's way of taking one thing or many wherever a list is expected."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def listify(p: Any = None, q: Any = None) -> list:
    """``p`` as a list: None -> ``[]``, one item (a str, a callback, a function) -> ``[p]``.

    With ``q`` (a length, or a sequence whose length counts) a one-element list is repeated to
    that length, and any other length must match it (``ValueError`` otherwise).

    >>> listify(None), listify("acc"), listify((1, 2)), listify([0.1], 3)
    ([], ['acc'], [1, 2], [0.1, 0.1, 0.1])
    """
    if p is None:
        p = []
    elif isinstance(p, str) or not isinstance(p, Iterable):
        p = [p]
    else:
        try:
            len(p)
        except TypeError:  # a 0-d tensor is iterable but has no length
            p = [p]
    p = list(p)
    if q is None:
        return p
    n = q if isinstance(q, int) else len(q)
    if len(p) == 1:
        p = p * n
    if len(p) != n:
        raise ValueError(f"got {len(p)} values for {n}")
    return p
