"""The schema of learnkit's checkpoint files, checked before anything is built or loaded from them.

A checkpoint is data from anywhere: every length, depth, type and range in it is checked here
before it decides what gets built, allocated or trusted.

- The bounded reading of the header and of JSON values (:func:`read_header`, :func:`load_json`)
  lives in :mod:`learnkit.safetensors_header`, below the registry; this module is above
  :mod:`learnkit.vision.models`, whose specs it checks and builds.
- :func:`check_model_metadata` checks every field of a model file (types, ranges, sizes, the
  agreed keys ``config``, ``best``, ``valid_split``, ``multi_label``, ``thresh``); unknown keys are
  accepted but bounded. :mod:`learnkit.opt_schema` does the same for optimizer files.
- :func:`check_spec` accepts in ``model_spec.kwargs`` only the options that shape the architecture,
  by allowlist per model family (:mod:`learnkit.spec_kwargs`): never a path, URL, hub, cache,
  device or weights, and before any builder runs.
- :func:`check_against_spec` builds the model the spec describes on the ``meta`` device (no memory),
  the only build before the checks, compares its parameter names and shapes with the file's
  tensors, then its parameter count and the activation memory of one item at the recorded size
  with the budget of :mod:`learnkit.build_budget`, before any real allocation.

Every lie is one :class:`~learnkit.errors.CheckpointError` line naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from learnkit.class_names import class_names_problem
from learnkit.errors import CheckpointError, UsageError
from learnkit.safetensors_header import (
    TensorInfo,
    bad_field,
    is_int,
    is_number,
    is_short_str,
)

MAX_OUTPUTS = 100_000
MAX_SIZE = 4096
MAX_GROUPS = 1000
TASKS = ("classification", "segmentation", "custom")


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
    problem = class_names_problem(classes)  # the rule the data was held to (learnkit.class_names)
    if problem is not None or not isinstance(classes, list):
        raise bad_field(where, "classes", problem or f"must be a list, not {type(classes).__name__}")
    n_out = spec.get("n_out") if isinstance(spec, dict) else None
    if n_out is not None and len(classes) != n_out:
        raise bad_field(where, "classes", f"{len(classes)} names for a model with {n_out} outputs")


def _check_norm_stats(stats: Any, spec: Any, where: str | Path) -> None:
    if stats is None:
        return
    kwargs = spec.get("kwargs") if isinstance(spec, dict) else None
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    channels = kwargs.get("in_channels", kwargs.get("in_chans", 3))
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
        if split["kind"] == "pct":  # what evaluation repeats: it must be a split a fit can make
            if not is_number(pct, 0.0, 1.0) or not 0.0 < pct < 1.0:
                raise bad_field(
                    where, "valid_split.valid_pct", "must be a number between 0 and 1 (exclusive)"
                )
            if not is_int(split.get("seed"), 0, 2**63 - 1):
                raise bad_field(where, "valid_split.seed", "must be an integer from 0 to 2**63-1")
        elif split["kind"] in ("folder", "column") and not is_short_str(split.get("name", ""), 255):
            raise bad_field(where, "valid_split.name", "must be a short string")
    fingerprint = meta.get("data_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise bad_field(where, "data_fingerprint", "must be a JSON object")
    if "multi_label" in meta and not isinstance(meta["multi_label"], bool | None):
        raise bad_field(where, "multi_label", "must be true or false")
    if meta.get("thresh") is not None and not is_number(meta["thresh"], 0.0, 1.0):
        raise bad_field(where, "thresh", "must be a number from 0 to 1")


def check_spec(spec: Any, where: str | Path) -> None:
    """``model_spec``: a known kind and arch, ``n_out`` in range, only allowlisted kwargs, in range."""
    from learnkit import registry
    from learnkit.spec_kwargs import kwarg_problem
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
        entry = registry.get(spec["arch"])
    except UsageError as exc:
        raise bad_field(where, "model_spec.arch", str(exc)) from None
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict) or len(kwargs) > 32:
        raise bad_field(where, "model_spec.kwargs", "must be a mapping of at most 32 options")
    for key, value in kwargs.items():
        problem = kwarg_problem(spec["kind"], entry, key, value)
        if problem is not None:
            raise bad_field(where, f"model_spec.kwargs.{str(key)[:40]}", problem)


def check_against_spec(
    infos: Mapping[str, TensorInfo], meta: Mapping[str, Any], where: str | Path, *, budget: bool = True
) -> None:
    """Build the spec's model on the ``meta`` device and compare its state with the file's tensors,
    then (with ``budget``) with the budget (:func:`learnkit.build_budget.check_budget`).

    Parameter and buffer names, shapes and dtype kinds must match (a missing
    ``num_batches_tracked`` is allowed); ``layer_groups`` must name the file's tensors. A build
    that leaves anything off the ``meta`` device is refused (no option may move it).
    """
    import torch

    from learnkit.build_budget import check_budget, on_meta
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
    if not on_meta(model):
        raise bad_field(where, "model_spec", "its build left the meta device")
    expected = {k: (tuple(v.shape), tensor_kind(v)) for k, v in model.state_dict().items()}
    check_fit(expected, infos, where)
    if budget:
        check_budget(model, meta, where)


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
