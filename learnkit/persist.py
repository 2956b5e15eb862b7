"""Saving a Learner to safetensors checkpoints and loading it back (DESIGN.md section 4).

``<name>.safetensors`` holds the weights and what rebuilds the model alone (zoo spec, classes, input
size, normalisation, layer groups). ``<name>.opt.safetensors`` holds what continues the run exactly:
optimizer state (tensors under ``state.<param name>.<key>``), hyper-parameters, the run's position,
the callbacks' state (the Recorder's history among them), the loss scale and the RNG states. Both
files carry the same ``step`` token, so a pair torn by a crash between the two writes is detected;
the old optimizer file is kept (``.<name>.opt.safetensors.prev``) until both are in place, so such
a pair still loads (weights and optimizer of the previous save).
"""

from __future__ import annotations

import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learnkit.checkpoint import (
    MODEL_FORMAT,
    OPT_FORMAT,
    flatten_optimizer_state,
    load_weights,
    optimizer_param_names,
    optimizer_path,
    read_safetensors,
    resolve_checkpoint,
    unflatten_optimizer_state,
    write_safetensors_together,
)
from learnkit.errors import CheckpointError
from learnkit.version import __version__

__all__ = ["load_into", "load_weights", "model_metadata", "save_learner"]


def model_metadata(learn: Any) -> dict:
    """What rebuilds the model from the checkpoint alone (all JSON-able)."""
    data = learn.data
    names = {id(p): n for n, p in learn.model.named_parameters()}
    return {
        "format": MODEL_FORMAT,
        "learnkit_version": __version__,
        "task": getattr(data, "task", "custom"),
        "model_spec": learn.model_spec,
        "classes": [str(c) for c in data.classes] if getattr(data, "classes", None) is not None else None,
        "size": getattr(data, "size", None),
        "norm_stats": getattr(data, "norm_stats", None),
        "layer_groups": [
            [names[id(p)] for p in g.parameters() if id(p) in names] for g in learn.layer_groups
        ],
    }


def _rng_state() -> tuple[dict, dict]:
    np_state = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy": torch.from_numpy(np_state[1].astype(np.int64)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {
        "python": random.getstate(),
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def _stateful_callbacks(learn: Any) -> dict:
    cbs = [*learn.fn_callbacks, *learn.callbacks]
    return {getattr(cb, "cb_name", type(cb).__name__): cb for cb in cbs if hasattr(cb, "state_dict")}


def save_learner(learn: Any, name: str | Path, with_opt: bool = True, metadata: dict | None = None) -> Path:
    """Write the learner's checkpoint (and optimizer file); returns the model file's path.

    The model file's metadata: :func:`model_metadata`, the learner's ``run_metadata`` (a training
    job puts the run's ``config`` there) and ``metadata``.
    """
    path = resolve_checkpoint(str(name), learn.path, learn.model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    step = f"{learn.epoch}.{learn.iteration}.{learn.batch}-{uuid.uuid4().hex[:12]}"
    extra = {**(getattr(learn, "run_metadata", None) or {}), **(metadata or {})}
    meta = model_metadata(learn) | extra | {"step": step}
    files = []
    if with_opt and learn.opt is not None:
        names = optimizer_param_names(learn.opt, learn.model)
        tensors, opt_meta = flatten_optimizer_state(learn.opt.state_dict(), names)
        rng_tensors, rng_meta = _rng_state()
        opt_meta |= {
            "format": OPT_FORMAT,
            "step": step,
            "hypers": learn.opt.hypers(),
            "run": {"epoch": learn.epoch, "iteration": learn.iteration, "batch": learn.batch},
            "callbacks": {k: cb.state_dict() for k, cb in _stateful_callbacks(learn).items()},
            "precision": learn.precision.state_dict(),
            "rng": rng_meta,
        }
        files.append((optimizer_path(path), tensors | rng_tensors, opt_meta))
    files.append((path, dict(learn.model.state_dict()), meta))
    # Both files are written before either is renamed, and the old optimizer file is kept until
    # both renames are done: a crash between them leaves a pair that load_into can still match.
    prev = keep_previous(optimizer_path(path)) if len(files) == 2 else None
    write_safetensors_together(files)
    if prev is not None:
        prev.unlink(missing_ok=True)
    return path


def previous_path(path: str | Path) -> Path:
    """Where :func:`keep_previous` keeps the file being replaced: ``.<name>.prev`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.prev")


def keep_previous(path: str | Path) -> Path | None:
    """Keep the current ``path`` (if any) as :func:`previous_path` (a hard link, else a copy).

    Taken before a set of files is replaced, it lets a reader who finds the set torn by a crash
    between two renames fall back on the old member that matches.
    """
    path = Path(path)
    if not path.is_file():
        return None
    prev = previous_path(path)
    prev.unlink(missing_ok=True)
    try:
        os.link(path, prev)
    except OSError:  # a filesystem without hard links
        shutil.copy2(path, prev)
    return prev


def check_compatible(learn: Any, meta: dict, path: Path) -> None:
    """Refuse, with one line, a checkpoint of another arch or class count."""
    mine, theirs = learn.model_spec or {}, meta.get("model_spec") or {}
    for key in ("arch", "n_out", "kind"):
        if mine.get(key) is not None and theirs.get(key) is not None and mine[key] != theirs[key]:
            raise CheckpointError(
                f"{path} holds a {theirs.get('arch')} with {theirs.get('n_out')} outputs; "
                f"this model is a {mine.get('arch')} with {mine.get('n_out')} outputs"
            )
    classes = getattr(learn.data, "classes", None)
    if classes is not None and meta.get("classes") is not None and len(classes) != len(meta["classes"]):
        raise CheckpointError(
            f"{path} was trained on {len(meta['classes'])} classes; the data has {len(classes)}"
        )


def _matching_optimizer_file(o_path: Path, path: Path, step: Any) -> tuple[dict, dict]:
    """The optimizer file saved with ``path`` (same ``step``): ``o_path``, or the previous one a
    crash between the two renames of a save left beside it (see :func:`save_learner`)."""
    o_tensors, o_meta = read_safetensors(o_path, expect_format=OPT_FORMAT)
    if o_meta.get("step") == step:
        return o_tensors, o_meta
    prev = previous_path(o_path)
    if prev.is_file():
        try:
            p_tensors, p_meta = read_safetensors(prev, expect_format=OPT_FORMAT)
        except CheckpointError:
            p_meta = {}
        if p_meta.get("step") == step:
            return p_tensors, p_meta
    raise CheckpointError(f"{o_path.name} is from another save than {path.name} (torn save?)")


def load_into(learn: Any, name: str | Path, strict: bool = True, with_opt: bool | None = None) -> dict:
    """Load a checkpoint into ``learn``; returns the model file's metadata."""
    path = resolve_checkpoint(str(name), learn.path, learn.model_dir)
    tensors, meta = read_safetensors(path, expect_format=MODEL_FORMAT)
    check_compatible(learn, meta, path)
    skip = () if strict else set(tensors) ^ set(learn.model.state_dict())
    load_weights(learn.model, tensors, str(path), skip=skip)
    o_path = optimizer_path(path)
    if with_opt is None:
        with_opt = o_path.exists()
    if not with_opt:
        return meta
    if not o_path.exists():
        raise CheckpointError(f"{path} has no optimizer state ({o_path.name} is missing)")
    o_tensors, o_meta = _matching_optimizer_file(o_path, path, meta.get("step"))
    hypers = o_meta["hypers"]
    if learn.opt is None:
        learn.create_opt(hypers["lrs"], hypers["wds"])
    state = {k: v for k, v in o_tensors.items() if not k.startswith("rng.")}
    names = optimizer_param_names(learn.opt, learn.model)
    try:
        learn.opt.load_state_dict(unflatten_optimizer_state(state, o_meta, names))
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{o_path}: optimizer state does not fit this model ({exc})") from None
    learn.opt.lr, learn.opt.wd = hypers["lrs"], hypers["wds"]
    run = o_meta["run"]
    learn.epoch, learn.iteration, learn.batch = run["epoch"], run["iteration"], run["batch"]
    callbacks = _stateful_callbacks(learn)
    for key, cb_state in o_meta.get("callbacks", {}).items():
        if key in callbacks:
            callbacks[key].load_state_dict(cb_state)
    learn.precision.load_state_dict(o_meta.get("precision", {}))
    _set_rng_state(o_tensors, o_meta["rng"])
    return meta
