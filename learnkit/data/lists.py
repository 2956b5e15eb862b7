"""fastai v1's list-based constructors of ``ImageDataBunch``: ``from_lists``, ``from_name_func``,
``from_name_re`` and ``from_df`` (one label per image; a ``label_delim`` makes ``from_df``
multi-label, as ``from_csv``).

All go through :func:`from_lists`: file names (relative to ``path`` unless absolute), their labels,
a random ``valid_pct`` split drawn with ``seed`` (v1's default 0.2), the classes sorted as v1 sorts
them, then the same data sets and loaders as ``from_folder``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from learnkit.data.bunch import default_device
from learnkit.data.dataset import ImageDataset, resolve_cache
from learnkit.errors import DataError, UsageError


def from_lists(
    cls: Any,
    path: str | Path,
    fnames: Sequence[str | Path],
    labels: Sequence[Any],
    valid_pct: float = 0.2,
    seed: int | None = None,
    classes: Sequence[str] | None = None,
    *,
    size: int = 64,
    bs: int = 64,
    num_workers: int | None = 0,
    ds_tfms: Any = None,
    augment: Any = False,
    cache: str = "auto",
    device: torch.device | str | None = None,
    normalize: bool = True,
    norm_stats: dict | None = None,
    label_delim: str | None = None,
    **kwargs: Any,
) -> Any:
    """The bunch of images ``fnames`` labelled ``labels`` (see the module doc)."""
    from learnkit.data.folder import _augment, pick_norm_stats, split_by_pct, split_record

    if kwargs:
        raise UsageError(f"unexpected argument(s) {', '.join(sorted(kwargs))}")
    path = Path(path).expanduser()
    files = [Path(f) if Path(f).is_absolute() else path / f for f in fnames]
    if len(files) != len(labels):
        raise UsageError(f"{len(files)} file names but {len(labels)} labels")
    if not files:
        raise DataError(f"no images to make a data set of (in {path})")
    rows = [_split_label(y, label_delim) for y in labels]
    multi = label_delim is not None
    names = [str(c) for c in classes] if classes is not None else sorted({c for row in rows for c in row})
    index = {c: i for i, c in enumerate(names)}
    unknown = sorted({c for row in rows for c in row} - set(index))
    if unknown:
        raise DataError(f"label '{unknown[0]}' is not one of the classes {names}")
    ys = [[index[c] for c in row] if multi else index[row[0]] for row in rows]
    seed = 0 if seed is None else seed
    train_idx, valid_idx = split_by_pct(len(files), valid_pct, seed)
    if not train_idx or not valid_idx:
        raise DataError(f"too few images ({len(files)}) to split off a validation set")
    mode = resolve_cache(cache, 3 * size * size * len(files))
    n_classes = len(names) if multi else None

    def dataset(idx: list[int]) -> ImageDataset:
        return ImageDataset(
            [files[i] for i in idx], [ys[i] for i in idx], size, cache=mode, n_classes=n_classes
        )

    bunch = cls._classifier(
        dataset(train_idx), dataset(valid_idx), names, size=size, bs=bs, seed=seed, num_workers=num_workers,
        augment=_augment(augment, ds_tfms), norm_stats=pick_norm_stats(normalize, norm_stats),
        device=torch.device(device) if device is not None else default_device(), rank=None, world_size=None,
        multi_label=multi, valid_split=split_record("", valid_pct, seed),
    )  # fmt: skip
    bunch.path = path
    return bunch


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
