"""Every field of a checkpoint and of its optimizer file is checked: lies in each are refused with one
CheckpointError (exit 4 on the command line) naming the field, never a RecursionError, TypeError or
KeyError, and a load that fails changes nothing in the learner (weights, optimizer, position).

Before the schema, std 0 gave ``null`` probabilities, ``classes`` as a string or a dict or shorter
than the outputs loaded, ``size: 0`` loaded, ``run.batch = 10**9`` and ``run.epoch = -5`` trained
nonsense, and deep JSON ended in a raw RecursionError. The per-category counts are the figures of
the README's reliability table.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from learnkit import ImageDataBunch
from learnkit.checkpoint import read_model_header
from learnkit.errors import CheckpointError
from learnkit.vision import cnn_learner
from learnkit.vision.learners import load_learner
from tests.core.tiny_images import make_class_folder

DEEP = "[" * 100_000 + "]" * 100_000
WRONG_TYPES = ["x", 5, -5, 1e308, True, [], {}, [[1, [2, [3]]]], {"a": {"b": 1}}]


def _model_lies(meta: dict) -> list[tuple[str, str, object]]:
    spec = meta["model_spec"]
    n = spec["n_out"]
    lies = [("model_spec", "model_spec", v) for v in [*WRONG_TYPES, None]]
    lies += [
        ("model_spec", "model_spec", {**spec, k: v}) for k in ("kind", "arch", "n_out") for v in WRONG_TYPES
    ]
    lies += [("model_spec", "model_spec", {**spec, "n_out": v}) for v in (0, -1, 10**9, n + 1, 2**64)]
    lies += [
        ("model_spec", "model_spec", {**spec, "kind": "cnn"}),
        ("model_spec", "model_spec", {**spec, "x": 1}),
    ]
    kwargs = [{"pretrained": "/etc/passwd"}, {"weights": "DEFAULT"}, {"channels": [40000] * 4},
              {"channels": "abc"}, {"channels": [[1]] * 4}, {"in_channels": 10**6}, {"nope": 1},
              {"channels": [16, 32]}, {"lin_ftrs": [10**6]}, {"k": "x" * 1000}, "kw", [1]]  # fmt: skip
    lies += [("model_spec.kwargs", "model_spec", {**spec, "kwargs": v}) for v in kwargs]
    lies += [("classes", "classes", v) for v in ["abc", {"a": 1}, ["only"], ["a"] * n, [1] * n, [["a"]] * n]]
    lies += [
        ("classes", "classes", [f"c{i}" for i in range(n + 1)]),
        ("classes", "classes", ["x" * 5000] * n),
    ]
    lies += [("size", "size", v) for v in [0, -3, 10**6, 1.5, "32", True, [32]]]
    norm = [{"mean": [0.5] * 3, "std": [0, 0, 0]}, {"mean": [0.5] * 3, "std": [-1, 1, 1]},
            {"mean": [0.5] * 7, "std": [0.2] * 7}, {"mean": [0.5] * 3}, {"mean": "x", "std": "y"},
            {"mean": [1e308] * 3, "std": [1] * 3}, {"mean": [0.5] * 3, "std": [1e-30] * 3},
            [0.5, 0.2], 3]  # fmt: skip
    lies += [("norm_stats", "norm_stats", v) for v in norm]
    lies += [
        ("layer_groups", "layer_groups", v) for v in [[["no.such.param"]], "x", [["a", "a"]], [[1]], [5]]
    ]
    lies += [("task", "task", v) for v in ["regression", 5, ["classification"]]]
    lies += [
        ("agreed keys", "best", v) for v in [{"epoch": -1, "monitor": "x", "value": 1}, "best", {"epoch": 1}]
    ]
    lies += [("agreed keys", "valid_split", v) for v in ["pct", {"kind": "pct", "valid_pct": 5}, {}]]
    lies += [
        ("agreed keys", k, v)
        for k, v in [("multi_label", "yes"), ("thresh", 2), ("thresh", "x"), ("config", [1])]
    ]
    lies += [("versions", k, v) for k in ("learnkit_version", "step") for v in (5, "x" * 1000, ["1"])]
    return lies


def _opt_lies(meta: dict) -> list[tuple[str, str, object]]:
    run, hypers, rng = meta["run"], meta["hypers"], meta["rng"]
    lies = [
        ("run", "run", {**run, k: v})
        for k in ("epoch", "batch", "iteration")
        for v in (-5, 10**12, "3", 1.5, None)
    ]
    lies += [("run", "run", {**run, "batch": 10**4, "iteration": 10**4}), ("run", "run", "x")]
    lies += [
        ("hypers", "hypers", {**hypers, k: v})
        for k in ("lrs", "wds")
        for v in ([-1, 1], [1], "x", [1e400, 1], [])
    ]
    lies += [("hypers", "hypers", v) for v in ("x", None)]
    py = rng["python"]
    lies += [
        ("rng", "rng", {**rng, "python": v}) for v in ([3, py[1][:5], None], "x", [3, [-1] * 625, None], None)
    ]
    lies += [
        ("rng", "rng", {**rng, "numpy": v}) for v in (["PCG64", 0, 0, 0.0], ["MT19937", 999, 0, 0.0], "x")
    ]
    lies += [
        ("precision", "precision", v)
        for v in ({"name": "fp8"}, "x", {"name": "fp16", "scaler": {"scale": 1e400}})
    ]
    lies += [("callbacks", "callbacks", v) for v in ("x", {"recorder": 5}, [1])]
    groups = meta["param_groups"]
    first = groups[0]["params"][0]
    lies += [("state layout", "param_groups", v) for v in ("x", [], [{"lr": 1}], groups + groups)]
    lies += [
        ("state layout", "state", v)
        for v in ("x", {"no.such": {}}, {first: {"exp_avg": {"__tensor__": "gone"}}})
    ]
    lies += [
        (
            "state layout",
            "state",
            {first: {"exp_avg": {"__tensor__": f"state.{groups[-1]['params'][-1]}.exp_avg"}}},
        )
    ]
    lies += [("state layout", "step", "another-save")]
    return lies


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", path=tmp_path_factory.mktemp("run"))
    learn.fit(1, 1e-3)
    return learn, learn.save("good")


def _read(file: Path) -> tuple[dict, dict]:
    with safe_open(str(file), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _write(dest: Path, tensors: dict, raw_meta: dict, key: str, value: object) -> None:
    meta = dict(raw_meta)
    meta[key] = DEEP if value == "DEEP" else json.dumps(value)
    save_file(tensors, str(dest), metadata=meta)


def _snapshot(learn) -> tuple:
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt = {k: v.clone() for k, v in learn.opt.state_dict()["state"][0].items()}
    return weights, opt, (learn.epoch, learn.iteration, learn.batch), learn.recorder.state_dict()["losses"][:]


def _unchanged(learn, before: tuple) -> bool:
    weights, opt, position, losses = _snapshot(learn)
    return (
        all(torch.equal(weights[k], before[0][k]) for k in weights)
        and all(torch.equal(opt[k], before[1][k]) for k in opt)
        and position == before[2]
        and losses == before[3]
    )


FIGURES: Counter = Counter()


@contextmanager
def _case(key: str, value: object):
    """Name the case in a failure."""
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"case: {key} = {str(value)[:80]}")
        raise


def test_lies_in_the_model_file_are_refused_naming_the_field(saved, tmp_path):
    learn, good = saved
    tensors, raw = _read(good)
    meta = {k: json.loads(v) for k, v in raw.items()}
    lies = [*_model_lies(meta), *[("JSON nesting", k, "DEEP") for k in raw]]
    opt_good = good.with_name("good.opt.safetensors")
    before = _snapshot(learn)
    for i, (category, key, value) in enumerate(lies):
        name = f"m{i}"
        dest = good.with_name(f"{name}.safetensors")
        _write(dest, tensors, raw, key, value)
        dest.with_name(f"{name}.opt.safetensors").write_bytes(opt_good.read_bytes())
        with pytest.raises(CheckpointError) as err:  # the checkpoint alone (predict, validate)
            read_model_header(dest)
            load_learner(dest)
        assert "\n" not in str(err.value)
        if (key, value) != ("model_spec", None):  # weights of a model built by hand: a Learner loads them
            with _case(key, value), pytest.raises(CheckpointError):  # into a learner (--resume)
                learn.load(name, with_opt=True)
        assert _unchanged(learn, before), f"{key}={str(value)[:60]} changed the learner"
        FIGURES[category] += 1
    FIGURES["model file cases"] = len(lies)


def test_lies_in_the_optimizer_file_are_refused_and_change_nothing(saved, tmp_path):
    learn, good = saved
    m_tensors, m_raw = _read(good)
    tensors, raw = _read(good.with_name("good.opt.safetensors"))
    meta = {k: json.loads(v) for k, v in raw.items()}
    lies = [*_opt_lies(meta), *[("JSON nesting", k, "DEEP") for k in raw]]
    before = _snapshot(learn)
    for i, (category, key, value) in enumerate(lies):
        name = f"o{i}"
        dest = good.with_name(f"{name}.opt.safetensors")
        _write(dest, tensors, raw, key, value)
        step = json.loads(raw["step"])  # the model file is the good one: a step lie is a torn pair
        save_file(
            m_tensors,
            str(good.with_name(f"{name}.safetensors")),
            metadata={**m_raw, "step": json.dumps(step)},
        )
        with _case(key, value), pytest.raises(CheckpointError) as err:
            learn.load(name, with_opt=True)
        assert "\n" not in str(err.value)
        assert _unchanged(learn, before), f"{key}={str(value)[:60]} changed the learner"
        FIGURES["opt " + category] += 1
    FIGURES["optimizer file cases"] = len(lies)


def test_an_optimizer_state_of_the_wrong_shape_changes_nothing(saved):
    """A Learner.load that failed on the optimizer file used to leave the weights already replaced."""
    learn, good = saved
    tensors, raw = _read(good.with_name("good.opt.safetensors"))
    key = next(k for k in tensors if k.endswith("exp_avg") and tensors[k].dim() == 4)
    tensors[key] = torch.zeros(2, 2)
    save_file(tensors, str(good.with_name("shape.opt.safetensors")), metadata=raw)
    good.with_name("shape.safetensors").write_bytes(good.read_bytes())
    with torch.no_grad():
        next(learn.model.parameters()).add_(1.0)  # differs from the file: a load would show
    before = _snapshot(learn)
    with pytest.raises(CheckpointError, match="exp_avg"):
        learn.load("shape", with_opt=True)
    assert _unchanged(learn, before)


def test_tensor_tables_that_lie_are_refused_before_any_data_is_read(saved, tmp_path):
    learn, good = saved
    head = good.read_bytes()
    n = struct.unpack("<Q", head[:8])[0]
    header = json.loads(head[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    cases = {
        "3 GB claimed in a 4 KB sparse file": {
            **header[name],
            "shape": [1 << 28, 3],
            "data_offsets": [0, 12 << 28],
        },
        "offsets not fitting the shape": {**header[name], "data_offsets": [0, 4]},
        "unknown dtype": {**header[name], "dtype": "PICKLE"},
        "negative shape": {**header[name], "shape": [-1]},
        "nine dimensions": {**header[name], "shape": [1] * 9},
        "entry not an object": "x",
    }
    for i, (_what, entry) in enumerate(cases.items()):
        text = json.dumps({**header, name: entry}).encode()
        dest = tmp_path / f"t{i}.safetensors"
        with open(dest, "wb") as f:
            f.write(struct.pack("<Q", len(text)) + text)
            f.truncate(8 + len(text) + (12 << 28 if i == 0 else 4096))  # sparse: no disk used
        with pytest.raises(CheckpointError):
            load_learner(dest)
        FIGURES["tensor table"] += 1
    many = {f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for i in range(100_001)}
    text = json.dumps(many).encode()
    (tmp_path / "many.safetensors").write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(CheckpointError, match="tensors"):
        load_learner(tmp_path / "many.safetensors")
    FIGURES["tensor table"] += 1


def test_report_figures(capsys):
    """Prints the figures (run with -s): categories and cases, all handled, nothing lost."""
    cases = FIGURES["model file cases"] + FIGURES["optimizer file cases"] + FIGURES["tensor table"]
    with capsys.disabled():
        print(f"\nschema figures: {dict(FIGURES)}; total cases {cases}")
