"""Labels from a CSV file, as fastai v1's ``ImageDataBunch.from_csv`` reads them.

``DATA/labels.csv``: a header row, then one row per image: the first column the file name
relative to DATA, the second the label. With ``label_delim`` the label holds several classes
(``"cat outdoor"`` with ``label_delim=" "``: multi-label). An ``is_valid`` column (``true``/``1``
or ``false``/``0``) puts rows in the validation set; without one ``valid_pct`` splits at random.

Example:
    >>> table = read_labels_csv(Path("data/labels.csv"), label_delim=" ")  # doctest: +SKIP
    >>> table.classes  # doctest: +SKIP
    ['cat', 'dog', 'outdoor']
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from learnkit.errors import DataError

LABELS_CSV = "labels.csv"
MAX_CSV_BYTES = 256 * 1024 * 1024
MAX_CSV_ROWS = 1_000_000
MAX_CSV_LINE = 1024 * 1024
_TRUE, _FALSE = {"1", "true", "yes", "y", "t"}, {"0", "false", "no", "n", "f", ""}


@dataclass(frozen=True)
class LabelsTable:
    """The rows of a labels CSV: files, their class names, and the ``is_valid`` flags (or None)."""

    files: list[Path]
    labels: list[list[str]]  # one class name per row, or several with a label_delim
    is_valid: list[bool] | None
    multi_label: bool

    @property
    def classes(self) -> list[str]:
        """The sorted class names that occur."""
        return sorted({c for row in self.labels for c in row})


def read_labels_csv(csv_path: Path, label_delim: str | None = None) -> LabelsTable:
    """Read ``csv_path`` (see the module doc); a DataError for a file that cannot be used.

    Every listed file must resolve (symlinks followed) inside the CSV's folder: a row naming
    ``../x.png`` or ``/abs/x.png`` is refused, naming the row. The file is held to the budgets
    :data:`MAX_CSV_BYTES` and :data:`MAX_CSV_ROWS`, checked before the rows are kept.
    """
    root = csv_path.parent
    real_root = root.resolve()
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_CSV_BYTES:
                raise DataError(f"{csv_path} is {size} bytes, more than the {MAX_CSV_BYTES} allowed")
            rows = []
            for row in csv.reader(_bounded_lines(fh, csv_path)):
                rows.append(row)
                if len(rows) > MAX_CSV_ROWS + 1:
                    raise DataError(f"{csv_path} has more than the {MAX_CSV_ROWS} rows allowed")
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {csv_path}: {exc}") from None
    if len(rows) < 2:
        raise DataError(f"{csv_path} has no rows after its header")
    header = [h.strip().lower() for h in rows[0]]
    if len(header) < 2:
        raise DataError(f"{csv_path}: expected at least 2 columns (file name, label), got {len(header)}")
    valid_col = header.index("is_valid") if "is_valid" in header else None
    files, labels, flags = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise DataError(f"{csv_path}:{line}: expected a file name and a label")
        name, label = row[0].strip(), row[1].strip()
        classes = [c for c in label.split(label_delim) if c] if label_delim else [label]
        if not classes or not classes[0]:
            raise DataError(f"{csv_path}:{line}: empty label for {name}")
        files.append(inside(root, real_root, name, f"{csv_path}:{line}"))
        labels.append(classes)
        if valid_col is not None:
            flag = row[valid_col].strip().lower() if valid_col < len(row) else ""
            if flag not in _TRUE | _FALSE:
                raise DataError(f"{csv_path}:{line}: is_valid must be true/false or 1/0, got {flag!r}")
            flags.append(flag in _TRUE)
    if not files:
        raise DataError(f"{csv_path} has no rows after its header")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DataError(f"{csv_path}: {len(missing)} listed file(s) not found (first: {missing[0]})")
    return LabelsTable(files, labels, flags if valid_col is not None else None, label_delim is not None)


def inside(root: Path, real_root: Path, name: str, where: str) -> Path:
    """``root / name``, or a DataError naming ``where`` when it resolves (symlinks followed) outside
    ``real_root`` (``root`` resolved): a path read from data never leaves DATA."""
    file = root / name
    try:
        real = file.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop, a name too long
        raise DataError(f"{where}: cannot resolve {name!r}: {exc}") from None
    if not name or real == real_root or not real.is_relative_to(real_root):
        raise DataError(f"{where}: {name!r} is outside {root} (files read from data must be inside DATA)")
    return file


def _bounded_lines(fh: IO[str], csv_path: Path) -> Iterator[str]:
    """The lines of ``fh``, each at most :data:`MAX_CSV_LINE` characters (no line read whole first)."""
    while True:
        line = fh.readline(MAX_CSV_LINE + 1)
        if not line:
            return
        if len(line) > MAX_CSV_LINE:
            raise DataError(f"{csv_path}: a line longer than the {MAX_CSV_LINE} characters allowed")
        yield line
