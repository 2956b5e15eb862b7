"""The schema of learnkit's checkpoint files, checked before anything is built or loaded from them.

A checkpoint is data from anywhere: every length, depth, type and range in it is checked here
before it decides what gets built, allocated or trusted.

- :func:`read_header` reads a safetensors header with its own limits (header bytes, tensor count,
  JSON nesting): the tensors' names, dtypes and shapes, and the metadata strings, no data read.
- :func:`load_json` parses one metadata value, bounded in size and nesting (a ``RecursionError``
  never escapes).
- :func:`check_model_metadata` checks every field of a model file (types, ranges, sizes, the
  agreed keys ``config``, ``best``, ``valid_split``, ``multi_label``, ``thresh``); unknown keys are
  accepted but bounded. :mod:`learnkit.opt_schema` does the same for optimizer files.
- :func:`check_against_spec` builds the model the spec describes on the ``meta`` device (no memory)
  and compares its parameter names and shapes with the file's tensors, before any real allocation.

Every lie is one :class:`~learnkit.errors.CheckpointError` line naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnkit.errors import CheckpointError, UsageError

MAX_MODEL_HEADER = 16 * 1024 * 1024  # a model's header: tensor table + metadata (classes, config)
MAX_OPT_HEADER = 128 * 1024 * 1024  # an optimizer's: also the per-batch history of a long run
MAX_TENSORS = 100_000
MAX_JSON_DEPTH = 32
MAX_OUTPUTS = 100_000
MAX_SIZE = 4096
MAX_NAME = 1024
MAX_GROUPS = 1000
MAX_DIM = 1 << 40
TASKS = ("classification", "segmentation", "custom")
_FORBIDDEN_KWARGS = {"pretrained", "weights", "weights_backbone", "progress", "model_dir", "file"}
# safetensors dtype -> (bytes per element, kind as checkpoint.load_weights compares them)
DTYPES: dict[str, tuple[int, str]] = {
    "F64": (8, "float"), "F32": (4, "float"), "F16": (2, "float"), "BF16": (2, "float"),
    "F8_E4M3": (1, "float"), "F8_E5M2": (1, "float"), "C64": (8, "complex"),
    "I64": (8, "torch.int64"), "I32": (4, "torch.int32"), "I16": (2, "torch.int16"),
    "I8": (1, "torch.int8"), "U8": (1, "torch.uint8"), "U16": (2, "torch.uint16"),
    "U32": (4, "torch.uint32"), "U64": (8, "torch.uint64"), "BOOL": (1, "torch.bool"),
}  # fmt: skip


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as the header describes it: dtype name, shape, and its byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def kind(self) -> str:
        """``float``, ``complex`` or the torch dtype's name (as ``load_weights`` compares kinds)."""
        return DTYPES[self.dtype][1]


def bad_field(where: str | Path, field: str, why: str) -> CheckpointError:
    """The one-line error for a field of a checkpoint that lies."""
    return _unusable(where, f"{field}: {why}")


def _unusable(where: str | Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{where}: not a usable learnkit checkpoint ({reason})")


def _depth_ok(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when ``value`` nests no deeper than ``limit`` (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return True


def load_json(text: str | bytes, where: str | Path, field: str, max_bytes: int = MAX_OPT_HEADER) -> Any:
    """``json.loads(text)`` bounded: at most ``max_bytes``, nested at most ``MAX_JSON_DEPTH`` deep;
    Infinity is allowed (a tracker's "no best yet"); fields that must be finite say so. Anything
    else is a CheckpointError naming ``field``."""
    if len(text) > max_bytes:
        raise bad_field(where, field, f"{len(text)} bytes, more than {max_bytes}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise bad_field(where, field, f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, TypeError) as exc:
        detail = str(exc).splitlines()[0][:120]
        raise _unusable(where, f"header: {detail}" if field == "header" else f"{field} is not JSON") from None
    if not _depth_ok(value):
        raise bad_field(where, field, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def read_header(
    path: str | Path, max_bytes: int = MAX_MODEL_HEADER
) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """The tensor table and raw metadata strings of safetensors file ``path``; no tensor data read.

    Checks the framing (an 8-byte length that fits the file and ``max_bytes``), the JSON (bounded),
    at most ``MAX_TENSORS`` entries, each with a known dtype, a shape of non-negative ints and a
    byte range that fits its shape and lies inside the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _unusable(path, f"only {size} bytes")
            n = int.from_bytes(head, "little")
            if n > max_bytes or n > size - 8:
                raise _unusable(path, f"header length {n} does not fit a file of {size} bytes")
            raw = f.read(n)
    except OSError as exc:
        raise bad_field(path, "header", str(exc).splitlines()[0][:200]) from None
    if raw.count(b'"data_offsets"') > MAX_TENSORS:  # cheap, before the parse builds a dict per entry
        raise bad_field(path, "header", f"more than {MAX_TENSORS} tensors")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_field(path, "header", "not UTF-8") from None
    header = load_json(text, path, "header", max_bytes)
    if not isinstance(header, dict):
        raise _unusable(path, "header is not a JSON object")
    raw_meta = header.pop("__metadata__", None) or {}
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise _unusable(path, "metadata is not a map of strings")
    data_bytes = size - 8 - n
    infos = {name: _tensor_info(path, name, entry, data_bytes) for name, entry in header.items()}
    return infos, raw_meta


def _tensor_info(path: Path, name: str, entry: Any, data_bytes: int) -> TensorInfo:
    field = f"tensor {name[:80]!r}"
    if len(name) > MAX_NAME or not isinstance(entry, dict):
        raise bad_field(path, field, "malformed entry")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPES:
        raise bad_field(path, field, f"unknown dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > 8 or not all(is_int(d, 0, MAX_DIM) for d in shape):
        raise bad_field(path, field, "shape is not a list of at most 8 non-negative integers")
    if not (
        isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o, 0, data_bytes) for o in offsets)
    ):
        raise bad_field(path, field, "data_offsets do not lie inside the file")
    numel = math.prod(shape)
    if offsets[1] - offsets[0] != numel * DTYPES[dtype][0]:
        raise bad_field(path, field, f"{offsets[1] - offsets[0]} bytes for a {dtype} tensor of shape {shape}")
    return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])


def decode_metadata(raw: Mapping[str, str], where: str | Path, max_bytes: int) -> dict[str, Any]:
    """Each metadata string parsed as bounded JSON (see :func:`load_json`)."""
    return {key: load_json(text, where, f"metadata {key[:60]!r}", max_bytes) for key, text in raw.items()}


# --- small type checks ---
def is_int(v: Any, lo: int, hi: int) -> bool:
    """An int (not a bool) from ``lo`` to ``hi``."""
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def is_number(v: Any, lo: float = -1e12, hi: float = 1e12) -> bool:
    """A finite int or float (not a bool) from ``lo`` to ``hi``."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi


def is_short_str(v: Any, n: int = MAX_NAME) -> bool:
    """A string of at most ``n`` characters."""
    return isinstance(v, str) and len(v) <= n


def all_finite(value: Any) -> bool:
    """Every number inside ``value`` (lists, dicts) finite; strings, bools and None allowed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


# --- the model file ---
def check_model_metadata(meta: Mapping[str, Any], where: str | Path) -> None:
    """Every field of a model file's metadata: types, ranges, sizes (see the module docstring)."""
    spec = meta.get("model_spec")
    if spec is not None:
        check_spec(spec, where)
    task = meta.get("task", "classification")
    if task is not None and (not isinstance(task, str) or task not in TASKS):
        raise bad_field(where, "task", f"must be one of {', '.join(TASKS)}")
    for key in ("learnkit_version", "step", "format"):
        if key in meta and not is_short_str(meta[key], 200):
            raise bad_field(where, key, "not a short string")
    _check_classes(meta.get("classes"), spec, where)
    size = meta.get("size")
    if size is not None and not is_int(size, 1, MAX_SIZE):
        raise bad_field(where, "size", f"must be an integer from 1 to {MAX_SIZE}, not {str(size)[:40]}")
    _check_norm_stats(meta.get("norm_stats"), spec, where)
    _check_layer_groups(meta.get("layer_groups"), where)
    _check_agreed_keys(meta, where)


def _check_classes(classes: Any, spec: Any, where: str | Path) -> None:
    if classes is None:
        return
    if not isinstance(classes, list) or not all(is_short_str(c) for c in classes):
        raise bad_field(where, "classes", f"must be a list of strings, not {type(classes).__name__}")
    if len(set(classes)) != len(classes):
        raise bad_field(where, "classes", "names repeat")
    n_out = spec.get("n_out") if isinstance(spec, dict) else None
    if n_out is not None and len(classes) != n_out:
        raise bad_field(where, "classes", f"{len(classes)} names for a model with {n_out} outputs")


def _check_norm_stats(stats: Any, spec: Any, where: str | Path) -> None:
    if stats is None:
        return
    kwargs = spec.get("kwargs") if isinstance(spec, dict) else None
    channels = (kwargs or {}).get("in_channels", 3) if isinstance(kwargs, dict) else 3
    if not isinstance(stats, dict) or set(stats) != {"mean", "std"}:
        raise bad_field(where, "norm_stats", 'must be {"mean": [...], "std": [...]}')
    for key in ("mean", "std"):
        values = stats[key]
        if not isinstance(values, list) or len(values) != channels:
            raise bad_field(where, f"norm_stats.{key}", f"must hold one number per channel ({channels})")
        lo = 1e-8 if key == "std" else -1e3
        if not all(is_number(v, lo, 1e3) for v in values):
            raise bad_field(
                where, f"norm_stats.{key}", "must be finite" + (" and positive" if key == "std" else "")
            )


def _check_layer_groups(groups: Any, where: str | Path) -> None:
    if groups is None:
        return
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise bad_field(where, "layer_groups", "must be a list of lists of parameter names")
    seen: set[str] = set()
    for group in groups:
        if not isinstance(group, list) or not all(is_short_str(n) for n in group):
            raise bad_field(where, "layer_groups", "must be a list of lists of parameter names")
        if seen & set(group) or len(set(group)) != len(group):
            raise bad_field(where, "layer_groups", "a parameter is named twice")
        seen.update(group)


def _check_agreed_keys(meta: Mapping[str, Any], where: str | Path) -> None:
    """The keys other parts of learnkit add (common.md): config, best, valid_split, multi_label, thresh."""
    if meta.get("config") is not None and not isinstance(meta["config"], dict):
        raise bad_field(where, "config", "must be a JSON object")
    best = meta.get("best")
    if best is not None:
        if not isinstance(best, dict) or not is_int(best.get("epoch"), 0, 10**7):
            raise bad_field(where, "best", 'must be {"epoch": int, "monitor": str, "value": number}')
        if not is_short_str(best.get("monitor"), 200) or not (
            best.get("value") is None or is_number(best["value"])
        ):
            raise bad_field(where, "best", 'must be {"epoch": int, "monitor": str, "value": number}')
    split = meta.get("valid_split")
    if split is not None:
        if not isinstance(split, dict) or not is_short_str(split.get("kind"), 64):
            raise bad_field(where, "valid_split", 'must be an object with a "kind"')
        pct = split.get("valid_pct")
        if pct is not None and not is_number(pct, 0.0, 1.0):
            raise bad_field(where, "valid_split.valid_pct", "must be a number from 0 to 1")
    if "multi_label" in meta and not isinstance(meta["multi_label"], bool | None):
        raise bad_field(where, "multi_label", "must be true or false")
    if meta.get("thresh") is not None and not is_number(meta["thresh"], 0.0, 1.0):
        raise bad_field(where, "thresh", "must be a number from 0 to 1")


def check_spec(spec: Any, where: str | Path) -> None:
    """``model_spec``: a known kind and arch, ``n_out`` in range, kwargs the builders take, bounded."""
    from learnkit import registry
    from learnkit.vision.models import MODEL_KINDS

    if not isinstance(spec, dict) or not {"kind", "arch", "n_out"} <= set(spec) or set(spec) - {
        "kind", "arch", "n_out", "kwargs"
    }:  # fmt: skip
        raise bad_field(where, "model_spec", "must be {kind, arch, n_out, kwargs}")
    if not isinstance(spec["kind"], str) or spec["kind"] not in MODEL_KINDS:
        raise bad_field(where, "model_spec.kind", f"must be one of {', '.join(sorted(MODEL_KINDS))}")
    if not is_short_str(spec["arch"], 100):
        raise bad_field(where, "model_spec.arch", "not a short string")
    if not is_int(spec["n_out"], 1, MAX_OUTPUTS):
        raise bad_field(where, "model_spec.n_out", f"must be an integer from 1 to {MAX_OUTPUTS}")
    try:
        registry.get(spec["arch"])
    except UsageError as exc:
        raise bad_field(where, "model_spec.arch", str(exc)) from None
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict) or len(kwargs) > 32:
        raise bad_field(where, "model_spec.kwargs", "must be a mapping of at most 32 options")
    for key, value in kwargs.items():
        field = f"model_spec.kwargs.{str(key)[:40]}"
        if key in _FORBIDDEN_KWARGS:
            raise bad_field(where, field, "a checkpoint cannot name files to load")
        if not _plain_option(value):
            raise bad_field(
                where, field, "must be a number, a short string, a boolean or a short list of them"
            )
    lin_ftrs = kwargs.get("lin_ftrs")
    if lin_ftrs is not None and not (
        isinstance(lin_ftrs, list) and len(lin_ftrs) <= 8 and all(is_int(v, 1, 65536) for v in lin_ftrs)
    ):
        raise bad_field(where, "model_spec.kwargs.lin_ftrs", "must be at most 8 sizes from 1 to 65536")


def _plain_option(value: Any) -> bool:
    scalar = (bool, int, float, str, type(None))
    if isinstance(value, list):
        return len(value) <= 16 and all(isinstance(v, scalar) and _plain_option(v) for v in value)
    if isinstance(value, str):
        return len(value) <= 64
    if isinstance(value, bool) or value is None:
        return True
    return is_number(value, -1e6, 1e6)


def check_against_spec(infos: Mapping[str, TensorInfo], meta: Mapping[str, Any], where: str | Path) -> None:
    """Build the spec's model on the ``meta`` device and compare its state with the file's tensors.

    Parameter and buffer names, shapes and dtype kinds must match (a missing
    ``num_batches_tracked`` is allowed); ``layer_groups`` must name the file's tensors.
    """
    import torch

    from learnkit.vision.models import build_model

    spec = meta.get("model_spec")
    groups = meta.get("layer_groups") or []
    missing = [n for g in groups for n in g if n not in infos]
    if missing:
        raise bad_field(where, "layer_groups", f"names {missing[0][:80]!r}, which the file does not hold")
    if not isinstance(spec, dict):
        return
    try:
        with torch.device("meta"):
            model, _ = build_model(spec)
    except CheckpointError:
        raise
    except Exception as exc:  # a builder given options it cannot build: the spec is the lie
        raise bad_field(
            where,
            "model_spec",
            f"cannot build it ({str(exc).splitlines()[0][:150] if str(exc) else type(exc).__name__})",
        ) from None
    expected = {k: (tuple(v.shape), tensor_kind(v)) for k, v in model.state_dict().items()}
    check_fit(expected, infos, where)


def tensor_kind(t: Any) -> str:
    """``float``, ``complex`` or the dtype name: what a checkpoint tensor must share with the model's."""
    if t.is_floating_point():
        return "float"
    return "complex" if t.is_complex() else str(t.dtype)


def check_fit(
    expected: Mapping[str, tuple[tuple[int, ...], str]],
    infos: Mapping[str, TensorInfo],
    where: str | Path,
    skip: set[str] | frozenset[str] = frozenset(),
) -> None:
    """The file's tensors (``infos``) are exactly ``expected`` (name -> (shape, kind)), less ``skip``."""
    missing = [
        k for k in expected if k not in infos and k not in skip and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in infos if k not in expected and k not in skip]
    wrong = [
        f"{k} {list(infos[k].shape)} vs {list(shape)}"
        for k, (shape, kind) in expected.items()
        if k in infos and k not in skip and (infos[k].shape != shape or infos[k].kind != kind)
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape/dtype mismatch", wrong)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            problems.append(f"{label}: {', '.join(k[:80] for k in keys[:3])}{more}")
    if problems:
        raise CheckpointError(
            f"{where}: weights do not fit the model its metadata describes ({'; '.join(problems)})"
        )
