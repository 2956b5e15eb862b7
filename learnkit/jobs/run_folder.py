"""A run's folder (``--path``): what marks a run there, never overwriting one, and ``config.yaml``.

A folder holds a run when it has ``models/last``, ``models/best``, ``config.yaml`` or
``history.csv``. A new run there is refused (before anything is written) unless it resumes it
(``--resume``), starts from it (``--init-from``) or replaces it (``--exist-ok``, which first removes
those files and the old run's outputs: plots, report, exports). A resumed run must be the same
run: its config is compared with the saved one.
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
        for file in [*found, *run_outputs(ck.path)]:
            file.unlink(missing_ok=True)


OUTPUTS = ("report.html", "skipped.txt")  # what commands write into a run folder, besides plots


def run_outputs(path: str | Path, model_dir: str = "models") -> list[Path]:
    """What a run's commands wrote beside its checkpoints, which ``--exist-ok`` clears with the run:
    ``plots/*.png``, ``report.html``, ``skipped.txt``, TensorBoard's event files and the exports
    of its checkpoints (``models/{last,best}.onnx|.pt2``). Other files are never touched."""
    folder = Path(path)
    found = [folder / name for name in OUTPUTS]
    found += sorted((folder / "plots").glob("*.png"))
    found += sorted((folder / "tensorboard").glob("events.out.tfevents.*"))
    found += [folder / model_dir / f"{n}{ext}" for n in RUN_CHECKPOINTS for ext in (".onnx", ".pt2")]
    return [p for p in found if p.is_file()]


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


SEGMENTATION_VALID_PCT = 0.2  # a U-Net's split when none is given (learnkit.jobs.setup.load_data's)


def absolute_data(config: RunConfig) -> RunConfig:
    """``config`` as it is recorded: its DATA folder an absolute path (a ``sample:NAME`` is kept),
    so its config.yaml replays from any folder, and a U-Net's validation split written out
    (``valid_pct`` 0.2 when none was given, the share segmentation data is split by)."""
    from dataclasses import replace

    data = config.data.data
    if data is not None and not str(data).startswith("sample:"):
        config = replace(config, data=replace(config.data, data=str(Path(str(data)).expanduser().resolve())))
    if config.model.unet is not None and config.data.valid_pct is None:
        config = replace(config, data=replace(config.data, valid_pct=SEGMENTATION_VALID_PCT))
    return config


def check_same_run(saved: RunConfig, config: RunConfig) -> None:
    """A UsageError naming the fields where ``config`` would change the run ``saved`` describes.

    Where and how it runs may change (device, workers, nproc, cache, path, patience) and
    ``epochs`` (a larger value extends a finished run); what it computes may not.
    """
    saved = absolute_data(saved)  # a run saved before DATA was kept absolute: the same folder here
    changed = [name for name in saved.diff(config) if name not in RESUME_FREE]
    if changed:
        raise UsageError(
            f"--resume: this run was saved with other settings ({', '.join(changed)}); resume it with "
            "its own (see config.yaml), or start a new run from its weights with --init-from"
        )


def check_process_count(saved: RunConfig, world: int, reshard: bool = False) -> None:
    """A UsageError when the run ``saved`` describes ran on another number of processes than
    ``world`` (its position counts batches of its processes), unless ``reshard``: said before the
    data is read (the checkpoint's own ``run.world_size`` is checked again when it is loaded)."""
    was = saved.runtime.nproc or 1
    if was != world and not reshard:
        raise UsageError(
            f"--resume: this run was trained by {was} process{'es' if was > 1 else ''} (nproc: {was} in "
            f"config.yaml), this one has {world}: resume with --nproc {was}, or give --reshard to "
            "re-plan the epoch for the new count (the run then differs from one never interrupted)"
        )


def run_segments(config: RunConfig) -> list[int]:
    """The ``--epochs`` of each training of the run ``config`` starts or continues, this one last:
    ``[2, 3]`` for a 2-epoch run extended to 3 by ``--resume --epochs 3``. A resume at the same
    ``--epochs`` (after an interruption) continues the last segment."""
    epochs = config.schedule.epochs
    if config.checkpoint.resume is None:
        return [epochs]
    segments: list[int] = []
    file = Path(str(config.checkpoint.path)) / CONFIG_FILE
    if file.is_file():
        from learnkit.jobs.config import read_config_file

        try:
            saved = read_config_file(file)
        except UsageError:
            saved = {}
        found = saved.get("segments")
        if isinstance(found, list) and all(isinstance(n, int) for n in found):
            segments = list(found)
        elif isinstance((saved.get("schedule") or {}).get("epochs"), int):
            segments = [saved["schedule"]["epochs"]]  # a run saved before segments were recorded
    return segments if segments and segments[-1] == epochs else [*segments, epochs]


def replay_note(base: dict[str, Any]) -> str | None:
    """What a ``--config`` replay of a run trained in several segments cannot repeat, or None."""
    segments = base.get("segments")
    if not (isinstance(segments, list) and len(segments) > 1):
        return None
    steps = ", then ".join(
        f"--epochs {n}" if i == 0 else f"--resume --epochs {n}" for i, n in enumerate(segments)
    )
    return (
        f"this run was trained in {len(segments)} segments ({steps}); one run from its config trains "
        f"--epochs {segments[-1]} at once, which is not the same schedule: to repeat it, run those "
        "steps with --config and the same --path"
    )


def write_config(config: RunConfig, path: str | Path | None = None) -> Path:
    """Write ``config`` (with the learnkit and torch versions, and the run's ``segments``, see
    :func:`run_segments`) to ``PATH/config.yaml``, atomically."""
    import torch
    import yaml

    from learnkit.version import __version__

    file = Path(config.checkpoint.path if path is None else path) / CONFIG_FILE
    file.parent.mkdir(parents=True, exist_ok=True)
    segments = run_segments(config)
    text = config.to_yaml({"learnkit": __version__, "torch": torch.__version__})
    text += yaml.safe_dump({"segments": segments}, default_flow_style=None)
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
    "absolute_data",
    "check_process_count",
    "check_same_run",
    "claim_run_folder",
    "lock_run_folder",
    "replay_note",
    "run_segments",
    "run_files",
    "run_outputs",
    "saved_config",
    "write_config",
]
