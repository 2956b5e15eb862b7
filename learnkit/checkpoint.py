"""Checkpoint files: safetensors only, written atomically, validated before they are trusted.

A checkpoint is ``<path>/<model_dir>/<name>.safetensors`` (the model) and optionally
``<name>.opt.safetensors`` (the optimizer). Every metadata value is JSON text. Reading checks the
file's framing before safetensors parses it, then the ``format`` tag and that every float tensor is
finite; anything wrong is one :class:`~learnkit.errors.CheckpointError` line. Nothing here unpickles:
a ``.pt``/``.pth`` state dict is read only through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from learnkit import atomic
from learnkit import checkpoint_schema as schema
from learnkit.atomic import fsync_dir, new_file_mode, temp_beside
from learnkit.checkpoint_schema import MAX_MODEL_HEADER, TensorInfo
from learnkit.errors import CheckpointError
from learnkit.opt_schema import check_opt_metadata

MODEL_FORMAT = "learnkit.model/1"
OPT_FORMAT = "learnkit.opt/1"
MAX_HEADER_BYTES = 100 * 1024 * 1024
_WEIGHT_SUFFIXES = {".safetensors", ".pt", ".pth", ".bin", ".ckpt"}


def resolve_checkpoint(name_or_file: str | Path, path: str | Path = ".", model_dir: str = "models") -> Path:
    """Where a checkpoint lives: ``NAME`` -> ``<path>/<model_dir>/NAME.safetensors``.

    A value ending in a weights suffix (``.safetensors``, ``.pt``, ...) or holding a path separator
    is a file, taken as given. Example: ``resolve_checkpoint("best", "run1")`` is
    ``run1/models/best.safetensors``.
    """
    text = str(name_or_file)
    if not text.strip():
        raise CheckpointError("empty checkpoint name")
    seps = {os.sep, os.altsep or os.sep, "/"}
    if any(s in text for s in seps) or Path(text).suffix.lower() in _WEIGHT_SUFFIXES:
        return Path(text).expanduser()
    return Path(path) / model_dir / f"{text}.safetensors"


def optimizer_path(model_file: str | Path) -> Path:
    """The optimizer file beside a model file: ``best.safetensors`` -> ``best.opt.safetensors``."""
    model_file = Path(model_file)
    return model_file.with_name(model_file.name.removesuffix(".safetensors") + ".opt.safetensors")


def write_safetensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> Path:
    """Write ``tensors`` and ``metadata`` (each value stored as JSON text) to ``path`` atomically.

    The file is written beside its destination under a unique temporary name, flushed to disk and
    renamed over ``path``: a reader, or a crash at any moment, sees the old file or the new one,
    never a torn one. The temporary file is removed if anything fails.
    """
    return write_safetensors_together([(path, tensors, metadata)])[0]


def write_safetensors_together(
    files: Sequence[tuple[str | Path, Mapping[str, torch.Tensor], Mapping[str, Any]]],
) -> list[Path]:
    """Write several files atomically each: all are written and flushed under temporary names
    first, then renamed in the order given. See :func:`learnkit.persist.save_learner` for how a
    model/optimizer pair stays consistent through crashes between the renames."""
    prepared: list[tuple[str, Path]] = []
    try:
        for path, tensors, metadata in files:
            prepared.append((prepare_safetensors(path, tensors, metadata), Path(path)))
        for tmp_name, path in prepared:
            os.replace(tmp_name, path)
            fsync_dir(path.parent)
    except BaseException:
        for tmp_name, _ in prepared:
            Path(tmp_name).unlink(missing_ok=True)
        raise
    return [path for _, path in prepared]


def prepare_safetensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any]
) -> str:
    """Write and fsync the file under a new temporary name beside ``path``; return that name.

    The temporary file is made by :func:`learnkit.atomic.temp_beside` (exclusive create, never a
    symlink followed, the target's mode set with ``fchmod``). It is removed if anything fails.
    """
    path = Path(path)
    meta = {str(k): json.dumps(v) for k, v in metadata.items()}
    tensors = _plain_tensors(tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = temp_beside(path)
    os.close(fd)
    try:
        atomic.step(f"write:{path.name}")
        save_file(tensors, tmp_name, metadata=meta)
        atomic.step(f"written:{path.name}")
        # safetensors may have replaced the file: reopen it, never through a symlink, to set its
        # mode and make its bytes durable before the rename
        fd = os.open(tmp_name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fchmod(fd, new_file_mode(path))
            os.fsync(fd)
        finally:
            os.close(fd)
        atomic.step(f"synced:{path.name}")
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return tmp_name


def stale_temp_files(folder: str | Path) -> list[Path]:
    """Temporary files a killed writer left in ``folder`` (``.<name>.safetensors.*.tmp``).

    Only the holder of the run folder's lock (:mod:`learnkit.run_lock`) may remove them."""
    folder = Path(folder)
    return sorted(folder.glob(".*.safetensors.*.tmp")) if folder.is_dir() else []


def read_header(
    path: str | Path, expect_format: str | None = None
) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    """The tensor table and metadata of a safetensors file, checked, with no tensor data read.

    The framing, header size, tensor count and JSON nesting are bounded (see
    :mod:`learnkit.checkpoint_schema`). With ``expect_format`` the file must be a learnkit file of
    that kind, its metadata all JSON, and every field of it passes the schema (a model file's
    ``model_spec``, ``classes``, ``norm_stats``...; an optimizer file's run position, RNG states...).
    """
    path = Path(path)
    limit = MAX_HEADER_BYTES if expect_format != MODEL_FORMAT else min(MAX_HEADER_BYTES, MAX_MODEL_HEADER)
    infos, raw_meta = schema.read_header(path, limit)
    if expect_format is None:
        metadata = {k: _decode_meta(path, k, v, limit) for k, v in raw_meta.items()}
        return infos, metadata
    metadata = schema.decode_metadata(raw_meta, path, limit)
    if metadata.get("format") != expect_format:
        found = metadata.get("format")
        raise CheckpointError(
            f"{path}: wrong checkpoint kind (format {str(found)[:40]!r}, expected {expect_format!r})"
            if found
            else f"{path}: not a learnkit checkpoint (no format tag; expected {expect_format!r})"
        )
    if expect_format == MODEL_FORMAT:
        schema.check_model_metadata(metadata, path)
    elif expect_format == OPT_FORMAT:
        check_opt_metadata(metadata, infos, path)
    return infos, metadata


def read_model_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    """A model file's checked header (:func:`read_header`), and its ``model_spec`` built on the
    ``meta`` device matched against the file's tensor names and shapes: nothing is allocated for a
    model that the file does not hold."""
    infos, meta = read_header(path, MODEL_FORMAT)
    schema.check_against_spec(infos, meta, path)
    return infos, meta


def read_tensors(path: str | Path, *, check_finite: bool = True) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file whose header was checked (:func:`read_header`), on the CPU."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as exc:
        raise _unusable(path, _one_line(exc)) from None
    if check_finite:
        _check_finite(path, tensors)
    return tensors


def read_safetensors(
    path: str | Path, expect_format: str | None = None, *, check_finite: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file after checking it is one: ``(tensors, metadata)``, on the CPU.

    Args:
        path: the file.
        expect_format: ``"learnkit.model/1"`` or ``"learnkit.opt/1"`` to insist on a learnkit file
            of that kind (its metadata must then be JSON and pass the schema); ``None`` reads any
            safetensors file, keeping metadata that is not JSON as plain strings.
        check_finite: refuse floating tensors holding NaN or infinity.

    Raises:
        CheckpointError: missing, truncated, malformed, of the wrong kind, lying metadata or
            non-finite values.
    """
    _, metadata = read_header(path, expect_format)
    return read_tensors(path, check_finite=check_finite), metadata


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A plain state dict from a local weights file: safetensors, or ``.pt``/``.pth``/``.bin``.

    The torch formats are read with ``weights_only=True`` (no arbitrary unpickling); a
    ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper is unwrapped. A ``module.`` prefix on every
    key (a DataParallel save) is removed.
    """
    path = Path(path)
    if path.suffix.lower() in {".pt", ".pth", ".bin", ".ckpt"}:
        if not path.is_file():
            raise CheckpointError(f"{path}: no such weights file")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the unpickler raises many kinds; all mean the same here
            raise _unusable(path, _one_line(exc)) from None
        state = _unwrap_state(path, state)
        _check_finite(path, state)
    else:
        state, _ = read_safetensors(path)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_weights(
    model: nn.Module, state: Mapping[str, torch.Tensor], where: str = "checkpoint", skip: Sequence[str] = ()
) -> None:
    """Load ``state`` into ``model`` after checking that it fits: keys, shapes and dtype kinds.

    Keys in ``skip`` are ignored on both sides (e.g. a head that is replaced). A missing
    ``num_batches_tracked`` is allowed (older BatchNorm saves lack it). Anything else that does not
    fit raises :class:`CheckpointError` naming a few of the keys.
    """
    skipped = set(skip)
    expected = {k: v for k, v in model.state_dict().items() if k not in skipped}
    given = {k: v for k, v in state.items() if k not in skipped}
    problems = []
    missing = [k for k in expected if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k} {list(given[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in given and (given[k].shape != v.shape or _kind(given[k]) != _kind(v))
    ]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape/dtype mismatch", wrong)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(keys[:3])}{more}")
    if problems:
        raise CheckpointError(f"{where}: weights do not fit the model ({'; '.join(problems)})")
    model.load_state_dict(given, strict=False)


def optimizer_param_names(optimizer: torch.optim.Optimizer, model: nn.Module) -> list[str]:
    """The model's names of the optimizer's parameters, group by group, in the optimizer's order."""
    by_id = {id(p): n for n, p in model.named_parameters()}
    try:
        return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]
    except KeyError:
        raise ValueError("the optimizer holds a parameter that is not in the model") from None


def flatten_optimizer_state(
    state_dict: Mapping[str, Any], param_names: Sequence[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Turn ``optimizer.state_dict()`` into safetensors tensors and JSON-able metadata.

    ``param_names[i]`` names the parameter the state dict calls ``i`` (see
    :func:`optimizer_param_names`). State tensors go under ``state.<param name>.<key>``; the rest
    (non-tensor state, ``param_groups`` with names for params) goes in the metadata as ``state`` and
    ``param_groups``. Tuples are kept as tuples; tensor-valued hyper-parameters become tensors.
    """
    groups = state_dict["param_groups"]
    ids = [i for g in groups for i in g["params"]]
    if len(ids) != len(param_names) or sorted(ids) != list(range(len(ids))):
        raise ValueError(f"{len(param_names)} parameter names for an optimizer of {len(ids)} parameters")
    tensors: dict[str, torch.Tensor] = {}
    state_meta = {
        param_names[i]: {
            key: _encode(value, f"state.{param_names[i]}.{key}", tensors) for key, value in per_param.items()
        }
        for i, per_param in state_dict["state"].items()
    }
    group_meta = [
        {
            **{k: _encode(v, f"param_groups.{n}.{k}", tensors) for k, v in g.items() if k != "params"},
            "params": [param_names[i] for i in g["params"]],
        }
        for n, g in enumerate(groups)
    ]
    return tensors, {"state": state_meta, "param_groups": group_meta}


def unflatten_optimizer_state(
    tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], param_names: Sequence[str]
) -> dict[str, Any]:
    """Rebuild the state dict that :func:`flatten_optimizer_state` took apart, for ``param_names``.

    Raises :class:`CheckpointError` when the saved parameters are not the model's, in its order.
    """
    try:
        groups, state = meta["param_groups"], meta["state"]
        saved_names = [name for g in groups for name in g["params"]]
    except (KeyError, TypeError):
        raise CheckpointError("optimizer state: metadata lacks 'param_groups' or 'state'") from None
    if saved_names != list(param_names):
        missing = [n for n in param_names if n not in saved_names][:3]
        unexpected = [n for n in saved_names if n not in param_names][:3]
        detail = f"missing: {missing}, unexpected: {unexpected}" if missing or unexpected else "order differs"
        raise CheckpointError(f"optimizer state is for other parameters ({detail})")
    index = {name: i for i, name in enumerate(param_names)}
    try:
        return {
            "state": {index[name]: _decode(values, tensors) for name, values in state.items()},
            "param_groups": [_decode_group(g, index, tensors) for g in groups],
        }
    except (AttributeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"optimizer state: malformed metadata ({_one_line(exc)})") from None


def _decode_group(group: dict[str, Any], index: dict[str, int], tensors: Mapping[str, torch.Tensor]) -> dict:
    hyper = _decode({k: v for k, v in group.items() if k != "params"}, tensors)
    return {**hyper, "params": [index[name] for name in group["params"]]}


def _encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of an optimizer value; tensors are moved into ``tensors`` under ``key``."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value
        return {"__tensor__": key}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _encode(v, f"{key}.{k}", tensors) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store optimizer value {key} of type {type(value).__name__}")


def _decode(value: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__tensor__"}:
            if value["__tensor__"] not in tensors:
                raise CheckpointError(f"optimizer state: tensor {value['__tensor__']!r} is missing")
            return tensors[value["__tensor__"]]
        if set(value) == {"__tuple__"}:
            return tuple(_decode(v, tensors) for v in value["__tuple__"])
        return {k: _decode(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    return value


def _decode_meta(path: Path, key: str, text: str, limit: int) -> Any:
    """A foreign file's metadata value: bounded JSON, else the plain string."""
    try:
        return schema.load_json(text, path, f"metadata {key[:60]!r}", limit)
    except CheckpointError:
        return text


def _check_finite(path: Path, tensors: Mapping[str, torch.Tensor]) -> None:
    for key, t in tensors.items():
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise _unusable(path, f"tensor {key!r} holds NaN or infinite values")


def _unwrap_state(path: Path, state: Any) -> dict[str, torch.Tensor]:
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _unusable(path, "not a state dict of named tensors")
    return state


def _plain_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached tensors; a tensor sharing storage with an earlier one is copied."""
    out, seen = {}, set()
    for key, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else 0
        if ptr and ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[key] = t
    return out


def _kind(t: torch.Tensor) -> str:
    if t.is_floating_point():
        return "float"
    return "complex" if t.is_complex() else str(t.dtype)


def _unusable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a usable learnkit checkpoint ({reason})")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
