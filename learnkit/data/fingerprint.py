"""What data a fit saw, recorded in its checkpoints, and what changed since.

:func:`data_fingerprint` describes a bunch's two splits (and both together): per split the number
of files, their total bytes, a digest of the sorted ``(name relative to DATA, size, label)`` rows, a
digest of their modification times, the count of each class, and, for up to :data:`MAX_LISTED`
files, the list itself (name, size, mtime) so that a change can be named file by file. Checkpoints
keep it under ``data_fingerprint``. :func:`describe_changes` compares a recorded fingerprint with
today's data and says what differs, in words: ``validate``, ``tta`` and ``--resume`` refuse changed
data (exit 3) unless told to go on (``--allow-changed-data``), then warn.

This module imports no torch.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from learnkit.errors import DataError

MAX_LISTED = 2000
MAX_LISTED_CHARS = 200_000  # of file names per list: the header of a model file stays small
SPLITS = ("train", "valid")


def data_fingerprint(data: Any) -> dict[str, Any] | None:
    """The fingerprint of ``data``'s train and valid sets (None for a bunch without file lists).

    Computed once per bunch (kept as ``data._fingerprint``): the files are stat-ed, not read.
    """
    cached = getattr(data, "_fingerprint", None)
    if cached is not None:
        return cached
    sets = {name: getattr(data, f"{name}_ds", None) for name in SPLITS}
    if any(getattr(ds, "paths", None) is None for ds in sets.values()):
        return None
    root = getattr(data, "data_root", None)
    classes = [str(c) for c in getattr(data, "classes", None) or []]
    rows = {name: _rows(ds, root, classes) for name, ds in sets.items()}
    result = {name: _summary(r, classes) for name, r in rows.items()}
    result["all"] = _summary([*rows["train"], *rows["valid"]], classes)
    try:
        data._fingerprint = result
    except AttributeError:
        pass
    return result


def _rows(ds: Any, root: Path | None, classes: list[str]) -> list[tuple[str, int, int, str]]:
    """``(name, size, mtime_ns, label)`` of each file of ``ds`` (its masks too), sorted."""
    labels = getattr(ds, "labels", None)
    masks = getattr(ds, "mask_paths", None) or []
    rows = []
    for i, path in enumerate(ds.paths):
        rows.append((*_stat(path, root), _label(labels[i] if labels is not None else None, classes)))
    rows += [(*_stat(m, root), "mask") for m in masks]
    return sorted(rows)


def _stat(path: Path, root: Path | None) -> tuple[str, int, int]:
    name = str(path)
    if root is not None:
        try:
            name = Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    try:
        st = os.stat(path)
    except OSError:
        return name, -1, -1
    return name, int(st.st_size), int(st.st_mtime_ns)


def _label(label: Any, classes: list[str]) -> str:
    if label is None:
        return ""
    if isinstance(label, list | tuple):
        return " ".join(_label(c, classes) for c in label)
    return classes[label] if 0 <= int(label) < len(classes) else str(label)


def _summary(rows: list[tuple[str, int, int, str]], classes: list[str]) -> dict:
    content, times = hashlib.sha256(), hashlib.sha256()
    for name, size, mtime, label in sorted(rows):
        content.update(f"{name}\0{size}\0{label}\n".encode("utf-8", "surrogateescape"))
        times.update(f"{name}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    counts = dict.fromkeys(classes, 0)
    for *_, label in rows:
        for c in label.split(" ") if label and label != "mask" else ():
            if c in counts:
                counts[c] += 1
    out: dict[str, Any] = {
        "n": sum(1 for r in rows if r[3] != "mask"),
        "bytes": sum(max(r[1], 0) for r in rows),
        "digest": content.hexdigest()[:32],
        "mtimes": times.hexdigest()[:32],
        "counts": counts if classes else {},
    }
    if len(rows) <= MAX_LISTED and sum(len(r[0]) for r in rows) <= MAX_LISTED_CHARS:
        out["files"] = [[name, size, mtime] for name, size, mtime, _ in sorted(rows)]
    return out


def describe_changes(saved: Any, now: Mapping[str, Any] | None, splits: Iterable[str] = SPLITS) -> list[str]:
    """What differs between a recorded fingerprint and today's, one phrase per change ([] when the
    same, or when either is missing or malformed: an older checkpoint records none)."""
    if not isinstance(saved, Mapping) or now is None:
        return []
    changes = []
    for split in splits:
        old, new = saved.get(split), now.get(split)
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            continue
        if old.get("digest") == new.get("digest") and old.get("mtimes") == new.get("mtimes"):
            continue
        what = "the data" if split == "all" else f"the {split} set"
        changes.append(f"{what}: {_difference(old, new)}")
    return changes


def _difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    parts = []
    n_old, n_new = old.get("n"), new.get("n")
    if n_old != n_new:
        parts.append(f"{n_old} images at the fit, {n_new} now")
    files_old, files_new = _files(old.get("files")), _files(new.get("files"))
    if files_old is not None and files_new is not None:
        added = sorted(set(files_new) - set(files_old))
        removed = sorted(set(files_old) - set(files_new))
        edited = sorted(n for n in set(files_old) & set(files_new) if files_old[n] != files_new[n])
        for word, names in (("added", added), ("removed", removed), ("changed", edited)):
            if names:
                parts.append(f"{len(names)} {word} ({_short(names)})")
    counts_old, counts_new = old.get("counts") or {}, new.get("counts") or {}
    if isinstance(counts_old, Mapping) and isinstance(counts_new, Mapping) and counts_old != counts_new:
        moved = [
            f"{c} {counts_old.get(c, 0)} -> {counts_new.get(c, 0)}"
            for c in sorted(set(counts_old) | set(counts_new))
            if counts_old.get(c, 0) != counts_new.get(c, 0)
        ]
        parts.append("class counts " + _short(moved))
    if not parts:
        same = old.get("digest") == new.get("digest")
        parts.append(
            "same names and sizes, other modification times (edited, or copied without them)"
            if same
            else "other files or labels, same count"
        )
    return "; ".join(parts)


def _files(value: Any) -> dict[str, tuple] | None:
    if not isinstance(value, list):
        return None
    try:
        return {str(row[0]): (row[1], row[2]) for row in value}
    except (TypeError, IndexError, KeyError):
        return None


def _short(names: Sequence[str], n: int = 3) -> str:
    more = f", +{len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def check_unchanged(
    saved: Any, data: Any, *, allow: bool, what: str, splits: Iterable[str] = SPLITS
) -> list[str]:
    """Compare ``data`` with the fingerprint ``saved``; a DataError (exit 3) naming the changes,
    or with ``allow`` the changes returned (for a warning). ``what`` names the checkpoint.

    The data as a whole is compared first: when it changed, that is what is said (and that the
    ``splits`` differ as a result); else each of ``splits`` (an ``is_valid`` column edited).
    """
    now = data_fingerprint(data)
    changes = describe_changes(saved, now, ["all"])
    splits = [s for s in splits if s != "all"]
    if changes:
        moved = [s for s in splits if describe_changes(saved, now, [s])]
        if moved:
            verb = "sets differ" if len(moved) > 1 else "set differs"
            changes.append(f"so the {' and '.join(moved)} {verb} from the fit's")
    else:
        changes = describe_changes(saved, now, splits)
    if changes and not allow:
        raise DataError(
            f"the data changed since {what} was trained: {'; '.join(changes)} "
            "(pass --allow-changed-data to go on)"
        )
    return changes
