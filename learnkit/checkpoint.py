"""Checkpoint files: safetensors only, written atomically, validated before they are trusted.

A checkpoint is ``<path>/<model_dir>/<name>.safetensors`` (the model) and optionally
``<name>.opt.safetensors`` (the optimizer). Every metadata value is JSON text. Reading checks the
file's framing before safetensors parses it, then the ``format`` tag and that every float tensor is
finite; anything wrong is one :class:`~learnkit.errors.CheckpointError` line. Plain weights files
(a state dict, e.g. pretrained weights) are read and loaded by :mod:`learnkit.weights`, below the
registry; its functions are re-exported here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from learnkit import atomic
from learnkit import checkpoint_schema as schema
from learnkit import safetensors_header as header
from learnkit.atomic import fsync_dir, new_file_mode, temp_beside
from learnkit.errors import CheckpointError
from learnkit.opt_schema import check_opt_metadata
from learnkit.safetensors_header import MAX_HEADER_BYTES, MAX_MODEL_HEADER, TensorInfo
from learnkit.weights import _one_line, load_weights, read_state_dict, read_tensors  # noqa: F401 - re-exported

MODEL_FORMAT = "learnkit.model/1"
OPT_FORMAT = "learnkit.opt/1"
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
    infos, raw_meta = header.read_header(path, limit)
    if expect_format is None:
        metadata = {k: _decode_meta(path, k, v, limit) for k, v in raw_meta.items()}
        return infos, metadata
    metadata = header.decode_metadata(raw_meta, path, limit)
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


def read_model_header(
    path: str | Path, *, budget: bool = True
) -> tuple[dict[str, TensorInfo], dict[str, Any]]:
    """A model file's checked header (:func:`read_header`), and its ``model_spec`` built on the
    ``meta`` device matched against the file's tensor names and shapes: nothing is allocated for a
    model that the file does not hold. With ``budget`` (for a model to be built from the file) its
    recorded size is checked against :mod:`learnkit.build_budget`; a learner loading weights into
    the model it already has passes ``False``."""
    infos, meta = read_header(path, MODEL_FORMAT)
    schema.check_against_spec(infos, meta, path, budget=budget)
    return infos, meta


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
        return header.load_json(text, path, f"metadata {key[:60]!r}", limit)
    except CheckpointError:
        return text


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
