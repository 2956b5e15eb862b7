"""A run's folder (``--path``): what marks a run there, never overwriting one, and ``config.yaml``.

A folder holds a run when it has ``models/last``, ``models/best``, ``config.yaml`` or
``history.csv``. A new run there is refused (before anything is written) unless it resumes it
(``--resume``), starts from it (``--init-from``) or replaces it (``--exist-ok``, which first removes
those files). A resumed run must be the same run: its config is compared with the saved one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from learnkit.errors import UsageError
from learnkit.jobs.config import RESUME_FREE, RunConfig

CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.csv"
RUN_CHECKPOINTS = ("last", "best")


def run_files(path: str | Path, model_dir: str = "models") -> list[Path]:
    """The files of a run in ``path`` (checkpoints last/best with their optimizer files, the
    config and the history) that exist."""
    folder = Path(path)
    models = folder / model_dir
    names = [models / f"{n}{ext}" for n in RUN_CHECKPOINTS for ext in (".safetensors", ".opt.safetensors")]
    return [p for p in [*names, folder / CONFIG_FILE, folder / HISTORY_FILE] if p.is_file()]


def check_outside_data(path: str | Path, data: str | Path) -> None:
    """A UsageError (exit 2) when the run folder ``path`` is the data folder or inside it (symlinks
    followed): its checkpoints and plots would be read as data by the next fit."""
    run, root = Path(path).resolve(), Path(data).resolve()
    if run == root or run.is_relative_to(root):
        raise UsageError(f"--path {path} is inside the data folder {data}: choose a run folder outside it")


def claim_run_folder(config: RunConfig, *, remove: bool = True) -> None:
    """Check that ``config`` may write its run into its path, before anything is written.

    A folder holding a run is refused (UsageError, exit 2) unless the config resumes it, starts
    from a checkpoint (``init_from``) or has ``exist_ok``; with ``exist_ok`` (and ``remove``) the
    old run's files are deleted first, so nothing of it mixes with the new one.
    """
    ck = config.checkpoint
    if ck.resume is not None or ck.init_from is not None:
        return
    found = run_files(ck.path)
    if not found:
        return
    if not ck.exist_ok:
        raise UsageError(
            f"{ck.path} already holds a run ({found[0].name}); continue it with --resume, start from "
            "it with --init-from last, or replace it with --exist-ok (or choose another --path)"
        )
    if remove:
        for file in found:
            file.unlink(missing_ok=True)


def saved_config(config: RunConfig, model_dir: str = "models") -> RunConfig | None:
    """The config saved with the checkpoint ``config`` resumes (its metadata ``config``, else the
    run folder's config.yaml); None when there is none (a run from before configs were saved)."""
    from learnkit.checkpoint import read_header, resolve_checkpoint

    name = config.checkpoint.resume
    if name is None:
        return None
    file = resolve_checkpoint(str(name), config.checkpoint.path, model_dir)
    saved: Any = None
    if file.is_file():
        _, meta = read_header(file)  # bounded and checked; no tensor data read
        saved = meta.get("config")
    if saved is None and (Path(config.checkpoint.path) / CONFIG_FILE).is_file():
        return RunConfig.load(Path(config.checkpoint.path) / CONFIG_FILE)
    return RunConfig.from_dict(saved) if isinstance(saved, dict) else None


def check_same_run(saved: RunConfig, config: RunConfig) -> None:
    """A UsageError naming the fields where ``config`` would change the run ``saved`` describes.

    Where and how it runs may change (device, workers, nproc, cache, path, patience) and
    ``epochs`` (a larger value extends a finished run); what it computes may not.
    """
    changed = [name for name in saved.diff(config) if name not in RESUME_FREE]
    if changed:
        raise UsageError(
            f"--resume: this run was saved with other settings ({', '.join(changed)}); resume it with "
            "its own (see config.yaml), or start a new run from its weights with --init-from"
        )


def write_config(config: RunConfig, path: str | Path | None = None) -> Path:
    """Write ``config`` (with the learnkit and torch versions) to ``PATH/config.yaml``, atomically."""
    import torch

    from learnkit.version import __version__

    file = Path(config.checkpoint.path if path is None else path) / CONFIG_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    text = config.to_yaml({"learnkit": __version__, "torch": torch.__version__})
    from learnkit.atomic import write_atomically

    write_atomically(file, lambda f: f.write(text), binary=False)
    return file


def lock_run_folder(path: str | Path) -> Any:
    """Rank 0 checks the run folder and holds its lock for the whole fit (see :mod:`learnkit.run_lock`);
    a run that fails before writing anything leaves no folder or lock file behind."""
    from contextlib import nullcontext

    from learnkit.distributed import env_rank
    from learnkit.run_lock import claim_folder

    if env_rank() != 0:
        return nullcontext()
    return claim_folder(path, "models", names=("last", "best"))


__all__ = [
    "check_same_run",
    "claim_run_folder",
    "lock_run_folder",
    "run_files",
    "saved_config",
    "write_config",
]
