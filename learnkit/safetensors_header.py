"""Bounded reading of a safetensors file's header: what every weights file is checked with first.

A file is data from anywhere: before safetensors parses it or anything is built from it, its
framing, header size, tensor count, JSON nesting and tensor table are checked here, with limits.

- :func:`read_header` reads the tensors' names, dtypes and shapes, and the metadata strings; no
  tensor data is read.
- :func:`load_json` parses one metadata value, bounded in size and nesting (a ``RecursionError``
  never escapes); :func:`decode_metadata` does it for every value.
- The small value checks (:func:`is_int`, :func:`is_number`, :func:`is_short_str`,
  :func:`all_finite`) and :func:`bad_field` are shared by the schemas of learnkit's own files
  (:mod:`learnkit.checkpoint_schema`, :mod:`learnkit.opt_schema`).

This module imports nothing of learnkit but its errors, and no torch: it sits at the bottom, below
the registry (whose pretrained weights files it checks, through :mod:`learnkit.weights`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from learnkit.errors import CheckpointError

MAX_HEADER_BYTES = 100 * 1024 * 1024  # any safetensors file's header (a model file's: MAX_MODEL_HEADER)
MAX_MODEL_HEADER = 16 * 1024 * 1024  # a model's header: tensor table + metadata (classes, config)
MAX_OPT_HEADER = 128 * 1024 * 1024  # an optimizer's: also the per-batch history of a long run
MAX_TENSORS = 100_000
MAX_JSON_DEPTH = 32
MAX_NAME = 1024
MAX_DIM = 1 << 40
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
