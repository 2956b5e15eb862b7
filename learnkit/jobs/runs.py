"""Run folders under ``runs/``: a new one for each training command, and finding the latest.

A training command given no ``--path`` writes its run in a folder of its own,
``runs/<command>/<n>`` (``n`` one more than the largest there), or ``runs/<name>`` with a name;
it never writes into the current folder. A command that reads a model (predict, validate, tta,
export, summary, report) given no ``--path`` uses the most recent run: the run folder under
``runs/`` whose files (checkpoints, config.yaml, history.csv) changed last.

``--model`` takes a checkpoint name (``best``), a run folder (its ``best``, else ``last``),
``RUN/models/NAME`` or a file (:func:`locate_model`).

Example:
    >>> new_run_path("fit-one-cycle", root="/tmp/nowhere")
    PosixPath('/tmp/nowhere/runs/fit-one-cycle/1')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from learnkit.errors import CheckpointError, UsageError
from learnkit.jobs.run_folder import CONFIG_FILE, run_files

RUNS = "runs"  # the folder of the runs started without --path
MODEL_DIR = "models"
SEGMENTATION_COMMANDS = ("unet",)  # a config.yaml whose command is one of these is a segmentation run


def new_run_path(command: str, name: str | None = None, root: str | Path = ".") -> Path:
    """The folder a training ``command`` started without ``--path`` writes into (not created here).

    ``runs/<name>`` when a name is given, else ``runs/<command>/<n>`` with ``n`` one more than the
    largest number there (1 for the first).
    """
    base = Path(root) / RUNS
    if name is not None:
        if not name.strip() or name in (".", "..") or "/" in name or os.sep in name:
            raise UsageError(f"--name {name!r}: give a plain folder name (no '/')")
        return base / name
    folder = base / command
    numbers = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return folder / str(max(numbers, default=0) + 1)


def run_task(run: Path) -> str:
    """``segmentation`` for a U-Net run, else ``classification`` (from the run's config.yaml)."""
    try:
        text = (run / CONFIG_FILE).read_text()
    except OSError:
        return "classification"
    for line in text.splitlines():
        if line.startswith("command:"):
            command = line.split(":", 1)[1].strip().strip("'\"")
            return "segmentation" if command in SEGMENTATION_COMMANDS else "classification"
    return "classification"


def find_runs(root: str | Path = ".") -> list[Path]:
    """The run folders under ``ROOT/runs`` (at depth 1 or 2), the most recently changed first."""
    base = Path(root) / RUNS
    if not base.is_dir():
        return []
    found: dict[Path, float] = {}
    for candidate in [*base.glob("*"), *base.glob("*/*")]:
        if candidate.is_dir() and not candidate.is_symlink():
            files = run_files(candidate, MODEL_DIR)
            if files:
                found[candidate] = max(f.stat().st_mtime_ns for f in files)
    return sorted(found, key=lambda p: (found[p], str(p)), reverse=True)


def latest_run(root: str | Path = ".", task: str | None = None) -> Path | None:
    """The most recent run under ``ROOT/runs`` (of ``task`` when given), or None."""
    for run in find_runs(root):
        if task is None or run_task(run) == task:
            return run
    return None


def data_task(data: str | Path) -> str:
    """``segmentation`` for segmentation data (``codes.txt`` and ``masks/``), else ``classification``;
    the data is not read (a missing folder is the loader's to report)."""
    text = str(data)
    if text.startswith("sample:"):
        return "segmentation" if text.endswith("-seg") else "classification"
    folder = Path(text).expanduser()
    return (
        "segmentation"
        if (folder / "codes.txt").is_file() and (folder / "masks").is_dir()
        else "classification"
    )


def _is_name(model: str) -> bool:
    """A bare checkpoint name (``best``), not a path or a file."""
    from learnkit.checkpoint import _WEIGHT_SUFFIXES

    return "/" not in model and os.sep not in model and Path(model).suffix.lower() not in _WEIGHT_SUFFIXES


def default_checkpoint(run: Path) -> Path:
    """A run folder's checkpoint when none is named: ``best``, else ``last``."""
    for name in ("best", "last"):
        file = run / MODEL_DIR / f"{name}.safetensors"
        if file.is_file():
            return file
    return run / MODEL_DIR / "best.safetensors"


def run_of(file: Path) -> Path:
    """The run folder of a checkpoint file: the folder above ``models/``, else the file's folder."""
    parent = file.parent
    return parent.parent if parent.name == MODEL_DIR else parent


def locate_model(
    model: str | None, path: str | Path | None = None, *, task: str | None = None, root: str | Path = "."
) -> tuple[Path, Path, str | None]:
    """``(checkpoint file, run folder, note)`` for ``--model MODEL`` and ``--path PATH``.

    ``model``: a name (``best``: ``PATH/models/best.safetensors``), a run folder (its ``best``,
    else ``last``), ``RUN/models/NAME`` (``.safetensors`` added) or a file; None is a run's default
    (best, else last). Without ``path`` a name is looked up in ``root`` (the current folder) when
    it is a run folder, else in the most recent run under ``runs/`` (of ``task`` when given); ``note`` then
    says which run was used (else it is None). Whether the file exists is checked by the loader.
    """
    text = None if model is None else str(model)
    if text is not None and not text.strip():
        raise CheckpointError("empty checkpoint name")
    if text is not None and not _is_name(text):  # a path: a run folder, RUN/models/NAME, or a file
        given = Path(text).expanduser()
        if given.is_dir() and (given / MODEL_DIR).is_dir():
            return default_checkpoint(given), given, None
        if not given.suffix and not given.exists() and given.with_name(given.name + ".safetensors").is_file():
            given = given.with_name(given.name + ".safetensors")
        return given, run_of(given), None
    if path is not None:
        run = Path(path)
        return _in_run(run, text), run, None
    here = Path(root)
    if (here / MODEL_DIR).is_dir() and any((here / MODEL_DIR).glob("*.safetensors")):
        return _in_run(here, text), here, None  # the current folder is a run folder (older --path .)
    run = latest_run(root, task)
    if run is None:
        kind = f" {task}" if task else ""
        raise CheckpointError(
            f"no{kind} run found under {Path(root) / RUNS} (and no models/ here): train one first, or "
            "give --path RUN_FOLDER or --model FILE"
        )
    return _in_run(run, text), run, f"using the latest{' ' + task if task else ''} run: {run}"


def place_run(config: Any, root: str | Path = ".") -> Any:
    """``config`` (a :class:`~learnkit.jobs.config.RunConfig`) with its run folder decided when its
    ``checkpoint.path`` is None: a resume continues the latest run of its kind (or the run of the
    checkpoint file it names), anything else gets a new folder (:func:`new_run_path`, named by
    ``checkpoint.name`` when set), and an ``init_from`` name is the latest run's checkpoint.
    Returns ``(config, note)``; the note says which earlier run was used (None when none was
    looked up)."""
    from dataclasses import replace

    ck = config.checkpoint
    if ck.path is not None:
        return config, None
    task = "segmentation" if config.command in SEGMENTATION_COMMANDS else "classification"
    if ck.resume is not None:
        file, run, note = locate_model(str(ck.resume), None, task=task, root=root)
        resume = ck.resume if _is_name(str(ck.resume)) else str(file)
        return replace(config, checkpoint=replace(ck, path=str(run), resume=resume)), note
    init_from, note = ck.init_from, None
    if init_from is not None and _is_name(str(init_from)):
        file, _, note = locate_model(str(init_from), None, task=task, root=root)
        init_from = str(file)
    path = new_run_path(config.command, getattr(ck, "name", None), root)
    return replace(config, checkpoint=replace(ck, path=str(path), init_from=init_from)), note


def _in_run(run: Path, name: str | None) -> Path:
    return default_checkpoint(run) if name is None else run / MODEL_DIR / f"{name}.safetensors"


__all__ = [
    "RUNS",
    "data_task",
    "find_runs",
    "latest_run",
    "locate_model",
    "new_run_path",
    "place_run",
    "run_task",
]
