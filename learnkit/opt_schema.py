"""The schema of learnkit's optimizer files (``<name>.opt.safetensors``): what continues a run.

Checked before anything is loaded (see :mod:`learnkit.checkpoint_schema` for the model file and the
bounded header and JSON reading both share): the save stamp, one learning rate and weight decay per
layer group, the run position (non-negative, bounded), the RNG states (a Mersenne Twister state
for Python and NumPy, a byte vector for torch), the precision and callbacks' state, and the layout
of the optimizer state (every parameter named once, every tensor it refers to present, each state
tensor of its parameter's shape and dtype), each hyper-parameter in its domain (``eps > 0``,
``betas`` in [0, 1), flags as the optimizer was built) and the Recorder's state of its types.
Every lie is one CheckpointError line naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from learnkit.checkpoint_schema import MAX_GROUPS
from learnkit.safetensors_header import TensorInfo, all_finite, bad_field, is_int, is_number, is_short_str

PRECISIONS = ("fp32", "fp16", "bf16")


def check_opt_metadata(meta: Mapping[str, Any], infos: Mapping[str, TensorInfo], where: str | Path) -> None:
    """Every field of an optimizer file: hyper-parameters, run position, RNG states, state layout."""
    if not is_short_str(meta.get("step"), 200):
        raise bad_field(where, "step", "missing or not a short string")
    hypers = meta.get("hypers")
    if not isinstance(hypers, dict):
        raise bad_field(where, "hypers", "missing or not an object")
    for key in ("lrs", "wds"):
        values = hypers.get(key)
        if (
            not isinstance(values, list)
            or not 1 <= len(values) <= MAX_GROUPS
            or not all(is_number(v, 0, 1e6) for v in values)
        ):
            raise bad_field(where, f"hypers.{key}", "must be one finite non-negative number per layer group")
    if not all_finite(hypers.get("moms")):
        raise bad_field(where, "hypers.moms", "must be finite")
    run = meta.get("run")
    limits = {"epoch": 10**6, "iteration": 10**10, "batch": 10**8}
    if not isinstance(run, dict) or not all(is_int(run.get(k), 0, hi) for k, hi in limits.items()):
        raise bad_field(where, "run", "must hold epoch, iteration and batch, non-negative integers")
    if run["batch"] > run["iteration"]:
        raise bad_field(where, "run", "batch is past the run's iteration count")
    if "world_size" in run and not is_int(run["world_size"], 1, 10**6):
        raise bad_field(where, "run.world_size", "must be a positive integer (the run's process count)")
    _check_rng(meta.get("rng"), infos, where)
    precision = meta.get("precision") or {}
    name = precision.get("name", "fp32") if isinstance(precision, dict) else None
    if not isinstance(name, str) or name not in PRECISIONS or not all_finite(precision):
        raise bad_field(where, "precision", f"must name one of {', '.join(PRECISIONS)} with finite numbers")
    callbacks = meta.get("callbacks") or {}
    if not isinstance(callbacks, dict) or not all(isinstance(v, dict) for v in callbacks.values()):
        raise bad_field(where, "callbacks", "must map names to objects")
    check_recorder(callbacks.get("recorder"), where)
    _check_opt_layout(meta, infos, where)


def _check_rng(rng: Any, infos: Mapping[str, TensorInfo], where: str | Path) -> None:
    if not isinstance(rng, dict):
        raise bad_field(where, "rng", "missing or not an object")
    py = rng.get("python")
    if not (
        isinstance(py, list) and len(py) == 3 and is_int(py[0], 0, 10)
        and isinstance(py[1], list) and len(py[1]) == 625 and all(is_int(v, 0, 2**32 - 1) for v in py[1])
        and py[1][-1] <= 624 and (py[2] is None or is_number(py[2]))
    ):  # fmt: skip
        raise bad_field(where, "rng.python", "not a Mersenne Twister state")
    np_state = rng.get("numpy")
    if not (
        isinstance(np_state, list) and len(np_state) == 4 and np_state[0] == "MT19937"
        and is_int(np_state[1], 0, 624) and is_int(np_state[2], 0, 1) and is_number(np_state[3])
    ):  # fmt: skip
        raise bad_field(where, "rng.numpy", "not a MT19937 state")
    torch_rng, numpy_rng = infos.get("rng.torch"), infos.get("rng.numpy")
    if (
        torch_rng is None
        or torch_rng.dtype != "U8"
        or len(torch_rng.shape) != 1
        or torch_rng.shape[0] > 1 << 20
    ):
        raise bad_field(where, "rng.torch", "missing or not a byte vector")
    if numpy_rng is None or numpy_rng.dtype != "I64" or numpy_rng.shape != (624,):
        raise bad_field(where, "rng.numpy", "missing or not 624 integers")
    cuda = sorted(n for n in infos if n.startswith("rng.cuda."))
    for name in cuda:
        if infos[name].dtype != "U8" or len(infos[name].shape) != 1:
            raise bad_field(where, name, "not a byte vector")
    if set(cuda) != {f"rng.cuda.{i}" for i in range(len(cuda))}:
        raise bad_field(where, "rng.cuda", "must be rng.cuda.0, rng.cuda.1, ... one per device")


def _check_opt_layout(meta: Mapping[str, Any], infos: Mapping[str, TensorInfo], where: str | Path) -> None:
    groups, state = meta.get("param_groups"), meta.get("state")
    if not isinstance(groups, list) or not 1 <= len(groups) <= MAX_GROUPS or not isinstance(state, dict):
        raise bad_field(where, "param_groups", "missing or not a list of groups")
    names: list[str] = []
    for group in groups:
        params = group.get("params") if isinstance(group, dict) else None
        if not isinstance(params, list) or not all(is_short_str(p) for p in params):
            raise bad_field(where, "param_groups", "a group without its list of parameter names")
        names.extend(params)
        if not all_finite(group):
            raise bad_field(where, "param_groups", "hyper-parameters must be finite")
        _check_group_domains(group, where)
    if len(set(names)) != len(names):
        raise bad_field(where, "param_groups", "a parameter is named twice")
    unknown = [n for n in state if n not in set(names)]
    if unknown:
        raise bad_field(where, "state", f"state for {unknown[0][:80]!r}, which no group holds")
    refs = _tensor_refs([groups, state])
    absent = [r for r in refs if r not in infos]
    if absent:
        raise bad_field(where, "state", f"tensor {absent[0][:80]!r} is missing")


def _check_group_domains(group: Mapping[str, Any], where: str | Path) -> None:
    """Each hyper-parameter of a group in its optimizer's domain: ``eps > 0``, ``betas`` and
    ``momentum`` in [0, 1), ``lr`` and ``weight_decay`` non-negative, flags booleans."""
    group = {k: _plain(v) for k, v in group.items()}
    eps = group.get("eps")
    if eps is not None and not (is_number(eps, 0.0, 1.0) and eps > 0):
        raise bad_field(where, "param_groups.eps", f"must be a number in (0, 1], not {str(eps)[:40]}")
    betas = group.get("betas")
    if betas is not None and not (
        isinstance(betas, list) and len(betas) == 2 and all(is_number(b, 0.0, 1.0) and b < 1 for b in betas)
    ):
        raise bad_field(where, "param_groups.betas", "must be two numbers in [0, 1)")
    mom = group.get("momentum")
    if mom is not None and not (is_number(mom, 0.0, 1.0) and mom < 1):
        raise bad_field(where, "param_groups.momentum", "must be a number in [0, 1)")
    for key in ("lr", "weight_decay"):
        if group.get(key) is not None and not is_number(group[key], 0.0, 1e6):
            raise bad_field(where, f"param_groups.{key}", "must be a finite non-negative number")
    for key in _FLAGS:
        if key in group and not isinstance(group[key], bool | None):
            raise bad_field(where, f"param_groups.{key}", "must be true or false")


def _plain(value: Any) -> Any:
    """A group value as checked: a saved tuple (``{"__tuple__": [...]}``) as its list; a tensor
    reference (``{"__tensor__": ...}``, a tensor-valued hyper-parameter) as None (not checked here)."""
    if isinstance(value, dict) and set(value) == {"__tuple__"}:
        return value["__tuple__"]
    if isinstance(value, dict) and set(value) == {"__tensor__"}:
        return None
    return value


_FLAGS = (
    "amsgrad",
    "nesterov",
    "maximize",
    "foreach",
    "capturable",
    "differentiable",
    "fused",
    "decoupled_weight_decay",
)


def check_opt_built(meta: Mapping[str, Any], built: list[dict], where: str | Path) -> None:
    """The file's optimizer flags (``amsgrad``, ``nesterov``...) are those the optimizer was built
    with: loading would otherwise switch the algorithm (an AMSGrad state the optimizer lacks)."""
    for saved, group in zip(meta["param_groups"], built):
        for key in ("amsgrad", "nesterov", "decoupled_weight_decay"):
            if key in group and key in saved and bool(saved[key]) != bool(group[key]):
                raise bad_field(
                    where,
                    f"param_groups.{key}",
                    f"{saved[key]} in the file, {group[key]} in the optimizer built",
                )


def check_recorder(state: Any, where: str | Path) -> None:
    """The Recorder's state (under ``callbacks.recorder``): each known key of its type, no other."""
    if state is None:
        return
    if not isinstance(state, dict):
        raise bad_field(where, "callbacks.recorder", "must be an object")
    unknown = [k for k in state if k not in _RECORDER]
    if unknown:
        raise bad_field(where, f"callbacks.recorder.{str(unknown[0])[:40]}", "not a Recorder field")
    for key, ok in _RECORDER.items():
        if key in state and not ok(state[key]):
            raise bad_field(where, f"callbacks.recorder.{key}", "not of the Recorder's type")


def _num(v: Any) -> bool:
    return v is None or (isinstance(v, int | float) and not isinstance(v, bool))


def _list_of(ok: Any) -> Any:
    return lambda v: isinstance(v, list) and all(ok(x) for x in v)


_RECORDER = {
    "losses": _list_of(_num),
    "lrs": _list_of(_num),
    "moms": _list_of(lambda x: _num(x) or _list_of(_num)(x)),
    "group_lrs": _list_of(_list_of(_num)),
    "val_losses": _list_of(_num),
    "metrics": _list_of(_list_of(lambda x: _num(x) or isinstance(x, str))),
    "metrics_names": _list_of(lambda x: isinstance(x, str)),
    "nb_batches": _list_of(lambda x: is_int(x, 0, 10**10)),
    "history": _list_of(lambda x: isinstance(x, dict)),
    "schedule": lambda v: v is None or isinstance(v, dict),
    "smoother": lambda v: isinstance(v, dict) and is_int(v.get("n"), 0, 10**12) and _num(v.get("mov_avg")),
}


def _tensor_refs(value: Any) -> list[str]:
    refs, stack = [], [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if set(item) == {"__tensor__"}:
                refs.append(str(item["__tensor__"]))
            else:
                stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return refs


def check_opt_shapes(
    meta: Mapping[str, Any],
    infos: Mapping[str, TensorInfo],
    params: Mapping[str, tuple[int, ...]],
    where: str | Path,
    dtypes: Mapping[str, str] | None = None,
) -> None:
    """Each parameter's non-scalar state tensors (``exp_avg``...) have that parameter's shape and
    (with ``dtypes``, the parameters' safetensors dtypes) its dtype, or float32 for a parameter in
    lower precision (an optimizer keeping float32 moments); scalar ones (``step``) are floats."""
    for name, per_param in meta["state"].items():
        shape = params.get(name)
        if shape is None or not isinstance(per_param, dict):
            continue
        dtype = (dtypes or {}).get(name)
        allowed = {dtype, "F32"} if dtype in ("F16", "BF16") else {dtype}
        for key, value in per_param.items():
            if isinstance(value, dict) and set(value) == {"__tensor__"}:
                info = infos[value["__tensor__"]]
                field = f"state.{name[:60]}.{str(key)[:20]}"
                if info.shape not in ((), (1,), shape):
                    raise bad_field(
                        where, field, f"shape {list(info.shape)} for a parameter of shape {list(shape)}"
                    )
                if info.shape == shape and shape not in ((), (1,)) and dtype is not None:
                    if info.dtype not in allowed:  # a moment: the parameter's dtype (float32 if lower)
                        raise bad_field(where, field, f"dtype {info.dtype} for a parameter of dtype {dtype}")
                elif info.dtype not in _FLOATS + ("I64", "I32"):  # a scalar: step, a counter
                    raise bad_field(where, field, f"dtype {info.dtype} for a scalar state")


_FLOATS = ("F32", "F64", "F16", "BF16")
