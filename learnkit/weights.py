"""Plain weights files (state dicts): read them checked, and load them into a model only if they fit.

- :func:`read_state_dict` reads a ``.safetensors`` file (its header checked first, see
  :mod:`learnkit.safetensors_header`) or a torch ``.pt``/``.pth``/``.bin`` file, through
  ``torch.load(weights_only=True)`` only: nothing here unpickles code.
- :func:`load_weights` loads a state dict into a model after checking its keys, shapes and dtype
  kinds.

This sits below the registry (``registry.create(..., pretrained=FILE)``) and the vision model
builders, which load pretrained weights with it; learnkit's own checkpoint files (their metadata
and schema) are :mod:`learnkit.checkpoint`'s, above them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from learnkit.errors import CheckpointError
from learnkit.safetensors_header import MAX_HEADER_BYTES, read_header


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
        read_header(path, MAX_HEADER_BYTES)  # the framing checked before safetensors parses the file
        state = read_tensors(path)
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
    _check_plausible(where, given)
    model.load_state_dict(given, strict=False)


MAX_WEIGHT = 1e20
"""A weight or statistic beyond this in magnitude makes every output NaN or infinite: refused."""


def _check_plausible(where: str, state: Mapping[str, torch.Tensor]) -> None:
    """A CheckpointError naming the first tensor no trained model holds: NaN or infinite values,
    magnitudes beyond :data:`MAX_WEIGHT`, or a negative BatchNorm running variance."""
    for key, t in state.items():
        if not t.is_floating_point():
            continue
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: tensor {key!r} holds NaN or infinite values")
        if t.numel() and float(t.abs().max()) > MAX_WEIGHT:
            raise CheckpointError(f"{where}: tensor {key!r} holds values beyond {MAX_WEIGHT:g}")
        if key.endswith("running_var") and t.numel() and float(t.min()) < 0:
            raise CheckpointError(f"{where}: tensor {key!r} (a BatchNorm variance) holds negative values")


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


def _kind(t: torch.Tensor) -> str:
    if t.is_floating_point():
        return "float"
    return "complex" if t.is_complex() else str(t.dtype)


def _unusable(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a usable learnkit checkpoint ({reason})")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
