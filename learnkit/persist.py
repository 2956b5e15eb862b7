"""Saving a Learner to safetensors checkpoints and loading it back (docs/design.md section 4).

``<name>.safetensors`` holds the weights and what rebuilds the model alone (zoo spec, classes, input
size, normalisation, layer groups). ``<name>.opt.safetensors`` holds what continues the run exactly:
optimizer state (tensors under ``state.<param name>.<key>``), hyper-parameters, the run's position,
the callbacks' state (the Recorder's history among them), the loss scale and the RNG states. Both
files carry the same ``step`` token; the save protocol (see :func:`save_learner`) keeps the old
model's optimizer file as ``.<name>.opt.safetensors.prev`` while a save is under way, so whatever
sequence of crashes hits consecutive saves, a consistent pair is on disk and :func:`load_into`
finds it. Loading checks everything before it changes anything in the learner.
"""

from __future__ import annotations

import copy
import os
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError

from learnkit import atomic, distributed
from learnkit.atomic import fsync_dir, temp_beside
from learnkit.checkpoint import (
    MODEL_FORMAT,
    OPT_FORMAT,
    flatten_optimizer_state,
    load_weights,
    optimizer_param_names,
    optimizer_path,
    prepare_safetensors,
    read_header,
    read_model_header,
    read_tensors,
    resolve_checkpoint,
    unflatten_optimizer_state,
)
from learnkit.checkpoint_schema import check_fit, tensor_kind
from learnkit.data.fingerprint import data_fingerprint
from learnkit.errors import CheckpointError, LearnkitError, UsageError
from learnkit.opt_schema import check_opt_built, check_opt_shapes
from learnkit.optim import OptimWrapper
from learnkit.version import __version__

if TYPE_CHECKING:
    from learnkit.learner import Learner

__all__ = [
    "Snapshot",
    "link_checkpoint",
    "load_into",
    "load_weights",
    "model_metadata",
    "save_learner",
    "snapshot_learner",
    "write_snapshot",
]


def model_metadata(learn: Learner) -> dict:
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
        "multi_label": bool(getattr(data, "multi_label", False)),
        **({"thresh": float(getattr(data, "thresh", 0.5))} if getattr(data, "multi_label", False) else {}),
        "valid_split": getattr(data, "valid_split", None),
        "data_fingerprint": data_fingerprint(data),
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
    cuda = cuda_rng_states(tensors)
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def cuda_rng_states(tensors: dict) -> list:
    """The ``rng.cuda.N`` states in device order (by the number N: ``rng.cuda.10`` after
    ``rng.cuda.9``, where sorting the names as text would put it after ``rng.cuda.1``)."""
    prefix = "rng.cuda."
    names = [k for k in tensors if k.startswith(prefix)]
    return [tensors[k] for k in sorted(names, key=lambda k: int(k.removeprefix(prefix)))]


def _stateful_callbacks(learn: Learner) -> dict:
    cbs = [*learn.fn_callbacks, *learn.callbacks]
    return {getattr(cb, "cb_name", type(cb).__name__): cb for cb in cbs if hasattr(cb, "state_dict")}


CB_TENSORS = "tensors"  # the key under which a callback's state_dict() may hold tensors


def _callback_states(learn: Learner) -> tuple[dict, dict]:
    """The callbacks' states for the optimizer file: JSON-able metadata and tensors apart.

    A callback's ``state_dict()`` may hold tensors under ``"tensors"`` (``{name: tensor}``, e.g.
    EMA weights or half-accumulated gradients); they are stored as ``callbacks.<cb>.<name>``.
    """
    meta, tensors = {}, {}
    for key, cb in _stateful_callbacks(learn).items():
        state = dict(cb.state_dict())
        for name, tensor in (state.pop(CB_TENSORS, None) or {}).items():
            tensors[f"callbacks.{key}.{name}"] = tensor.detach().cpu().contiguous()
        meta[key] = state
    return meta, tensors


def _callback_tensors(o_tensors: dict, key: str) -> dict:
    prefix = f"callbacks.{key}."
    return {k[len(prefix) :]: v for k, v in o_tensors.items() if k.startswith(prefix)}


def save_learner(
    learn: Learner, name: str | Path, with_opt: bool = True, metadata: dict | None = None
) -> Path:
    """Write the learner's checkpoint (and optimizer file); returns the model file's path.

    The model file's metadata: :func:`model_metadata`, the learner's ``run_metadata`` (a training
    job puts the run's ``config`` there) and ``metadata``. The same as :func:`snapshot_learner`
    then :func:`write_snapshot` (which a background writer runs apart, see
    :mod:`learnkit.checkpoint_writer`); the protocol is :func:`write_snapshot`'s.
    """
    return write_snapshot(snapshot_learner(learn, name, with_opt, metadata))


@dataclass
class Snapshot:
    """What one checkpoint holds, copied out of the learner (CPU tensors no training step touches):
    the model file's tensors and metadata, and the optimizer file's (None: a model file alone)."""

    path: Path
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    opt_tensors: dict[str, torch.Tensor] | None = None
    opt_meta: dict[str, Any] | None = None

    @property
    def step(self) -> str:
        return self.meta["step"]


def snapshot_learner(
    learn: Learner, name: str | Path, with_opt: bool = True, metadata: dict | None = None
) -> Snapshot:
    """Copy what the checkpoint ``name`` needs out of ``learn`` (weights, optimizer state, RNG
    states, run position, callbacks' state), so training may go on while it is written."""
    path = resolve_checkpoint(str(name), learn.path, learn.model_dir)
    step = f"{learn.epoch}.{learn.iteration}.{learn.batch}-{uuid.uuid4().hex[:12]}"
    extra = {**(getattr(learn, "run_metadata", None) or {}), **(metadata or {})}
    meta = copy.deepcopy(model_metadata(learn) | extra | {"step": step})
    weights = _copied(learn.model.state_dict())
    if not (with_opt and learn.opt is not None):
        return Snapshot(path, weights, meta)
    names = optimizer_param_names(learn.opt, learn.model)
    tensors, opt_meta = flatten_optimizer_state(learn.opt.state_dict(), names)
    rng_tensors, rng_meta = _rng_state()
    cb_meta, cb_tensors = _callback_states(learn)
    opt_meta |= {
        "format": OPT_FORMAT,
        "step": step,
        "hypers": learn.opt.hypers(),
        "run": {
            "epoch": learn.epoch,
            "iteration": learn.iteration,
            "batch": learn.batch,
            "world_size": distributed.world_size(),  # the processes the position counts batches of
        },
        "callbacks": cb_meta,
        "precision": learn.precision.state_dict(),
        "rng": rng_meta,
    }
    opt_tensors = _copied(tensors | rng_tensors | cb_tensors)
    return Snapshot(path, weights, meta, opt_tensors, copy.deepcopy(opt_meta))


def _copied(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors as CPU copies of their own (a later training step changes none of them)."""
    out = {}
    for key, t in tensors.items():
        t = t.detach()
        out[key] = t.to("cpu", copy=True) if t.device.type != "cpu" else t.clone()
    return out


def write_snapshot(snap: Snapshot) -> Path:
    """Write a :class:`Snapshot`; returns the model file's path.

    The protocol keeps a consistent model/optimizer pair on disk through any sequence of crashes
    (each file is renamed into place whole; the model file is the commit point):

    1. both new files are written and fsynced under temporary names;
    2. if the optimizer file on disk matches the model file on disk (same ``step``), it is linked
       to ``.<name>.opt.safetensors.prev`` (atomically: link to a temporary name, then rename);
       if it does not (an earlier save was cut between its renames), ``.prev`` already holds the
       model's match and is left alone;
    3. the new optimizer file is renamed into place (the old model's match is in ``.prev``);
    4. the new model file is renamed into place (its match is the optimizer file);
    5. ``.prev`` is removed.

    A reader (:func:`load_into`) takes the optimizer file whose ``step`` equals the model's:
    the optimizer file, else ``.prev``. A snapshot without optimizer state first removes the
    optimizer files of ``name`` (a model file alone is read without one; a stale one beside a
    newer model file would be a torn pair).
    """
    path = snap.path
    path.parent.mkdir(parents=True, exist_ok=True)
    if snap.opt_tensors is None:
        tmp = None
        try:
            tmp = prepare_safetensors(path, snap.tensors, snap.meta)
            _remove_optimizer_files(path)
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError | SafetensorError):
                raise write_failure(path, exc) from None
            raise
        return path
    o_path = optimizer_path(path)
    temps: list[str] = []
    try:
        temps.append(prepare_safetensors(o_path, snap.opt_tensors, snap.opt_meta or {}))
        temps.append(prepare_safetensors(path, snap.tensors, snap.meta))
        _keep_match_as_previous(path, o_path)
        atomic.step("rename:opt")
        os.replace(temps[0], o_path)
        fsync_dir(path.parent)
        atomic.step("rename:model")
        os.replace(temps[1], path)
        fsync_dir(path.parent)
        atomic.step("remove:prev")
        previous_path(o_path).unlink(missing_ok=True)
        atomic.step("done")
    except BaseException as exc:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError | SafetensorError):
            raise write_failure(path, exc) from None
        raise
    return path


def link_checkpoint(source: Path, name: str | Path, step: str) -> Path:
    """Make the checkpoint ``name`` (a model file alone, e.g. ``best``) the very file ``source``
    (a hard link: no second copy; a copy where the filesystem has no links), ``source`` having
    been written with ``step`` (checked: the link is never made to another save's file).

    ``name``'s optimizer files are removed first, then the link is renamed over ``name``'s model
    file: a crash at any moment leaves the old ``name`` or the new one, readable alone. ``source``
    is later replaced by a rename, never rewritten in place, so ``name`` keeps this save's bytes.
    Returns ``name``'s model file.
    """
    path = Path(name) if isinstance(name, Path) else source.with_name(f"{name}.safetensors")
    if _header_step(source) != step:
        raise LearnkitError(f"could not link {path} to {source}: {source.name} is from another save")
    try:
        _remove_optimizer_files(path)
        fd, tmp = temp_beside(path)
        os.close(fd)
        try:
            os.unlink(tmp)
            atomic.step("link:model")
            try:
                os.link(source, tmp)
            except OSError:  # another filesystem, or one without hard links
                shutil.copy2(source, tmp)
                _fsync_file(tmp)
            atomic.step("rename:link")
            os.replace(tmp, path)
            fsync_dir(path.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise write_failure(path, exc) from None
    return path


def _fsync_file(name: str) -> None:
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_optimizer_files(path: Path) -> None:
    """Remove the optimizer file of the model file ``path`` and its ``.prev`` (durably)."""
    o_path = optimizer_path(path)
    removed = False
    for file in (o_path, previous_path(o_path)):
        if file.is_file() or file.is_symlink():
            file.unlink()
            removed = True
    if removed:
        fsync_dir(path.parent)


def write_failure(path: Path, exc: BaseException) -> LearnkitError:
    """One line for a checkpoint that could not be written (disk full, read-only, folder gone):
    the path, the reason, and that the previous checkpoint is intact (exit 1)."""
    if isinstance(exc, OSError) and exc.errno:
        reason = os.strerror(exc.errno)
    else:
        found = re.search(r'message: "([^"]+)"', str(exc))
        reason = found.group(1) if found else (str(exc).splitlines() or [type(exc).__name__])[0][:200]
    kept = (
        f"the previous checkpoint {path} is intact"
        if path.is_file()
        else "no earlier checkpoint of that name exists"
    )
    return LearnkitError(f"could not write {path}: {reason.lower()}; {kept}")


def _header_step(file: Path) -> Any:
    """The ``step`` a learnkit file records, or None when it is missing or unreadable."""
    try:
        _, meta = read_header(file)
    except CheckpointError:
        return None
    return meta.get("step")


def _keep_match_as_previous(path: Path, o_path: Path) -> None:
    """Step 2 of :func:`save_learner`: make ``.prev`` hold the optimizer file matching ``path``."""
    if not path.is_file() or not o_path.is_file():
        return
    step = _header_step(path)
    if step is None or _header_step(o_path) != step:
        return  # torn by an earlier crash: .prev (if anything) is the model's match; keep it
    prev = previous_path(o_path)
    fd, tmp = temp_beside(prev)
    os.close(fd)
    try:
        os.unlink(tmp)
        atomic.step("link:prev")
        try:
            os.link(o_path, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copy2(o_path, tmp)
        atomic.step("rename:prev")
        os.replace(tmp, prev)
        fsync_dir(prev.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_learner` keeps the optimizer file that matches the model on disk while
    a save is under way: ``.<name>.prev`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.prev")


def check_compatible(learn: Learner, meta: dict, path: Path) -> None:
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


def _matching_optimizer_file(o_path: Path, path: Path, step: Any) -> tuple[Path, dict, dict]:
    """The optimizer file saved with ``path`` (same ``step``): ``o_path``, or ``.prev`` when a crash
    (or a save running now) left the model file one save behind (see :func:`save_learner`).
    Returns ``(file, tensor table, metadata)``, all checked against the schema."""
    found = None
    for candidate in (o_path, previous_path(o_path)):
        try:
            infos, o_meta = read_header(candidate, OPT_FORMAT)
        except CheckpointError as exc:
            found = found or exc
            continue
        if o_meta.get("step") == step:
            return candidate, infos, o_meta
    if isinstance(found, CheckpointError) and not o_path.is_file():
        raise found
    if found is not None and _header_step(o_path) == step:
        raise found  # the matching file itself is broken: say how
    raise CheckpointError(f"{o_path.name} is from another save than {path.name} (torn save?)")


def load_into(
    learn: Learner,
    name: str | Path,
    strict: bool = True,
    with_opt: bool | None = None,
    *,
    reshard: bool = False,
) -> dict:
    """Load a checkpoint into ``learn``; returns the model file's metadata.

    A run's position is counted in batches of its processes: one saved by another number of
    processes (``run.world_size``, 1 when absent) is a UsageError, unless ``reshard``, which
    re-plans the position in the epoch for the processes now (:func:`reshard_batch`) and records
    ``learn.resharded = (saved count, count now, saved batch, new batch)``.

    Everything is read and checked first (both files' schemas, the weights' names and shapes
    against the model, the optimizer state against a fresh optimizer, the run position and RNG
    states); only then is anything in ``learn`` changed, so a load that fails changes nothing.
    A save running at the same time may replace the files between two reads: the pair is then
    read again (a few times) until model and optimizer file come from the same save.
    """
    path = resolve_checkpoint(str(name), learn.path, learn.model_dir)
    o_path = optimizer_path(path)
    files = (path, o_path, previous_path(o_path))
    for attempt in range(_ATTEMPTS):
        before = [_identity(f) for f in files]
        try:
            staged = _stage(learn, path, strict, with_opt, reshard)
            break
        except CheckpointError:
            replaced = [_identity(f) for f in files] != before
            if attempt == _ATTEMPTS - 1 or not replaced:
                raise
            time.sleep(0.05 * (attempt + 1))  # a save is under way: let it finish its renames
    return _commit(learn, staged)


_ATTEMPTS = 10


def _identity(file: Path) -> tuple | None:
    """What changes when a file is replaced by a rename (a save): device, inode, size, mtime."""
    try:
        st = os.stat(file)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _still(files: dict[Path, tuple | None]) -> None:
    """The files read are the ones whose headers were checked (no save replaced one meanwhile)."""
    if any(_identity(f) != before for f, before in files.items()):
        raise CheckpointError("a save replaced the checkpoint while it was read (torn save?); reading again")


def _stage(learn: Learner, path: Path, strict: bool, with_opt: bool | None, reshard: bool = False) -> dict:
    """Read and check everything :func:`load_into` needs, changing nothing in ``learn``."""
    o_path = optimizer_path(path)
    seen = {f: _identity(f) for f in (path, o_path, previous_path(o_path))}
    # the schema, and its spec's model (on `meta`) fits it; no size budget: the model is built already
    infos, meta = read_model_header(path, budget=False)
    check_compatible(learn, meta, path)
    expected = {k: (tuple(v.shape), tensor_kind(v)) for k, v in learn.model.state_dict().items()}
    skip = frozenset() if strict else frozenset(set(infos) ^ set(expected))
    check_fit(expected, infos, path, skip)
    staged: dict[str, Any] = {"meta": meta, "path": path}
    if with_opt is None:
        with_opt = o_path.exists()
    if with_opt and not o_path.exists():
        raise CheckpointError(f"{path} has no optimizer state ({o_path.name} is missing)")
    if with_opt:
        _check_same_classes(learn, meta, path)
        o_file, o_infos, o_meta = _matching_optimizer_file(o_path, path, meta.get("step"))
        params = {n: tuple(p.shape) for n, p in learn.model.named_parameters()}
        dtypes = {n: _ST_DTYPES.get(p.dtype) for n, p in learn.model.named_parameters()}
        check_opt_shapes(o_meta, o_infos, params, o_file, dtypes)
        o_meta = _check_world_size(o_meta, o_file, reshard)
        _check_position(learn, o_meta, o_file)
        staged |= {"o_file": o_file, "o_meta": o_meta}
    staged["tensors"] = read_tensors(path)
    if with_opt:
        o_tensors = read_tensors(staged["o_file"])
        _check_rng(o_tensors, staged["o_meta"], staged["o_file"])
        staged["opt"] = _staged_optimizer(learn, o_tensors, staged["o_meta"], staged["o_file"])
        staged["o_tensors"] = o_tensors
    _still({f: seen[f] for f in (path, staged.get("o_file")) if f is not None})
    return staged


_ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def _check_same_classes(learn: Learner, meta: dict, path: Path) -> None:
    """Continuing a run needs its classes, by name and in order: a renamed class folder (same
    count) would otherwise train on with shifted labels (UsageError, exit 2)."""
    saved, found = meta.get("classes"), getattr(learn.data, "classes", None)
    if saved is None or found is None:
        return
    found = [str(c) for c in found]
    if found != list(saved):
        diff = [f"{a!r} -> {b!r}" for a, b in zip(saved, found) if a != b][:3]
        raise UsageError(
            f"{path}: the data's classes are not the run's (classes: {', '.join(diff) or 'order'}); "
            "resume with the run's data, or start a new run from its weights with --init-from"
        )


def reshard_batch(batch: int, saved_world: int, world: int) -> int:
    """The batch of an epoch that ``world`` processes resume at, for one that ``saved_world`` had
    reached: each batch step takes ``world`` x bs samples of the epoch's one order (the sampler
    deals it out rank by rank), so the samples done are ``batch x saved_world`` batch-steps of one
    process; rounded down (a few samples seen twice rather than skipped)."""
    return batch * saved_world // world


def _check_world_size(o_meta: dict, o_file: Path, reshard: bool) -> dict:
    """The saved run's process count against this one's: the same, or ``reshard`` (a copy of
    ``o_meta`` with the batch re-planned and ``resharded`` recorded); else a UsageError."""
    run = o_meta["run"]
    saved, now = int(run.get("world_size", 1)), distributed.world_size()
    if saved == now:
        return o_meta
    if not reshard:
        raise UsageError(
            f"{o_file.name} was saved by a run of {saved} process{'es' if saved > 1 else ''}, this one has "
            f"{now}: resume with --nproc {saved} (or the same torchrun), or give --reshard to re-plan "
            "the epoch for the new count (the run then differs from one never interrupted)"
        )
    batch = reshard_batch(int(run["batch"]), saved, now)
    moved = {**run, "batch": batch, "iteration": int(run["iteration"]) - int(run["batch"]) + batch}
    return {**o_meta, "run": moved, "resharded": [saved, now, int(run["batch"]), batch]}


def _check_position(learn: Learner, o_meta: dict, o_file: Path) -> None:
    """The run position must be one this learner's data can continue from."""
    run = o_meta["run"]
    train_dl = getattr(learn.data, "train_dl", None)
    try:
        n_batches = len(train_dl) if train_dl is not None else None
    except TypeError:
        n_batches = None
    if n_batches and run["batch"] > n_batches:  # == n_batches: stopped during validation
        raise CheckpointError(
            f"{o_file}: not a usable learnkit checkpoint (run.batch: {run['batch']} is past the "
            f"{n_batches} batches of an epoch of this data)"
        )
    n_groups = len(learn.layer_groups)
    if len(o_meta["hypers"]["lrs"]) != n_groups or len(o_meta["hypers"]["wds"]) != n_groups:
        raise CheckpointError(
            f"{o_file}: not a usable learnkit checkpoint (hypers: not one value per layer group, {n_groups})"
        )


def _check_rng(tensors: dict, meta: dict, o_file: Path) -> None:
    """The RNG states restore (tried on throw-away generators)."""
    try:
        torch.Generator().set_state(tensors["rng.torch"])
        version, state, gauss = meta["rng"]["python"]
        random.Random().setstate((version, tuple(state), gauss))
        kind, pos, has_gauss, cached = meta["rng"]["numpy"]
        np.random.RandomState().set_state(
            (kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
        )
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{o_file}: not a usable learnkit checkpoint (rng: {exc})") from None


def _staged_optimizer(learn: Learner, o_tensors: dict, o_meta: dict, o_file: Path) -> Any:
    """A new optimizer over ``learn``'s layer groups holding the file's state (checked by loading)."""
    hypers = o_meta["hypers"]
    opt = OptimWrapper(
        learn.opt_func, learn.layer_groups, hypers["lrs"], hypers["wds"], learn.true_wd, learn.bn_wd
    )
    check_opt_built(o_meta, opt.opt.param_groups, o_file)
    state = {k: v for k, v in o_tensors.items() if not k.startswith(("rng.", "callbacks."))}
    names = optimizer_param_names(opt, learn.model)
    try:
        opt.load_state_dict(unflatten_optimizer_state(state, o_meta, names))
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{o_file}: optimizer state does not fit this model ({exc})") from None
    opt.lr, opt.wd = hypers["lrs"], hypers["wds"]
    return opt


def _commit(learn: Learner, staged: dict) -> dict:
    """Apply a checked load to ``learn``; the weights, callbacks' and precision's state come back
    on failure.

    The weights go in before the callbacks' states, because a callback may change them on load
    (the EMA puts the raw training weights back under the saved average)."""
    skip = _extra(learn, staged)
    if "opt" not in staged:
        load_weights(learn.model, staged["tensors"], str(staged["path"]), skip=skip)
        return staged["meta"]
    o_meta, o_file = staged["o_meta"], staged["o_file"]
    callbacks = _stateful_callbacks(learn)
    before = {k: cb.state_dict() for k, cb in callbacks.items()}
    precision_before = learn.precision.state_dict()
    weights_before = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    load_weights(learn.model, staged["tensors"], str(staged["path"]), skip=skip)
    try:
        for key, cb_state in o_meta.get("callbacks", {}).items():
            if key in callbacks:
                cb_tensors = _callback_tensors(staged["o_tensors"], key)
                callbacks[key].load_state_dict(
                    {**cb_state, CB_TENSORS: cb_tensors} if cb_tensors else cb_state
                )
        learn.precision.load_state_dict(o_meta.get("precision", {}))
    except Exception as exc:
        learn.model.load_state_dict(weights_before)
        for key, cb_state in before.items():
            callbacks[key].load_state_dict(cb_state)
        learn.precision.load_state_dict(precision_before)
        raise CheckpointError(
            f"{o_file}: not a usable learnkit checkpoint (callbacks: {exc!r:.150})"
        ) from None
    del weights_before
    if learn.opt is None:
        learn.opt = staged["opt"]
    else:
        learn.opt.load_state_dict(staged["opt"].state_dict())
        learn.opt.lr, learn.opt.wd = o_meta["hypers"]["lrs"], o_meta["hypers"]["wds"]
    run = o_meta["run"]
    learn.epoch, learn.iteration, learn.batch = run["epoch"], run["iteration"], run["batch"]
    learn.resharded = tuple(o_meta["resharded"]) if o_meta.get("resharded") else None
    _set_rng_state(staged["o_tensors"], o_meta["rng"])
    return staged["meta"]


def _extra(learn: Learner, staged: dict) -> set[str]:
    """Keys on one side only (ignored by a non-strict load; a strict one was checked to have none)."""
    return set(staged["tensors"]) ^ set(learn.model.state_dict())
