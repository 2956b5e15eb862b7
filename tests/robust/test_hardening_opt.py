"""Issue 28, point 5: optimizer files that would resume silently wrong are refused (exit 4 naming
the field): moments of another dtype, hyper-parameters outside their domain, an optimizer flag the
optimizer was not built with, a Recorder state of other types, a position past the epoch.

Before: moments stored as f16 or i64, a negative ``eps`` and ``betas`` of 1 resumed with exit 0
and other weights than the uninterrupted run; ``amsgrad: true`` and a string as the Recorder's
losses gave an internal error (exit 1).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from learnkit.errors import CheckpointError

from .test_checkpoint_schema import _read, _snapshot, _unchanged, saved  # noqa: F401 - the fixture


def _tensor_lies(tensors: dict) -> list[tuple[str, dict]]:
    key = next(k for k in tensors if k.endswith("exp_avg") and tensors[k].dim() == 4)
    return [
        ("dtype F16", {**tensors, key: tensors[key].half()}),
        ("dtype I64", {**tensors, key: tensors[key].long()}),
    ]


def _meta_lies(meta: dict) -> list[tuple[str, str, object]]:
    groups = meta["param_groups"]

    def with_group(**change):
        return [{**g, **change} for g in groups]

    lies = [
        ("param_groups.eps", "param_groups", with_group(eps=-1e-8)),
        ("param_groups.eps", "param_groups", with_group(eps=0)),
        ("param_groups.betas", "param_groups", with_group(betas={"__tuple__": [0.9, 1.0]})),
        ("param_groups.betas", "param_groups", with_group(betas={"__tuple__": [-0.1, 0.99]})),
        ("param_groups.amsgrad", "param_groups", with_group(amsgrad=not groups[0].get("amsgrad", False))),
        ("param_groups.amsgrad", "param_groups", with_group(amsgrad="yes")),
        ("run.batch", "run", {**meta["run"], "batch": 999, "iteration": 10**6}),
    ]
    rec = meta["callbacks"]["recorder"]
    lies += [
        ("callbacks.recorder.losses", "callbacks", {**meta["callbacks"], "recorder": {**rec, "losses": "x"}}),
        (
            "callbacks.recorder.smoother",
            "callbacks",
            {**meta["callbacks"], "recorder": {**rec, "smoother": 1}},
        ),
        ("callbacks.recorder.learn", "callbacks", {**meta["callbacks"], "recorder": {**rec, "learn": "x"}}),
    ]
    return lies


def test_optimizer_files_that_would_resume_wrong_are_refused_naming_the_field(saved, tmp_path):  # noqa: F811
    learn, good = saved
    m_tensors, m_raw = _read(good)
    tensors, raw = _read(good.with_name("good.opt.safetensors"))
    meta = {k: json.loads(v) for k, v in raw.items()}
    cases = [(why, t, raw) for why, t in _tensor_lies(tensors)]
    cases += [(why, tensors, {**raw, key: json.dumps(value)}) for why, key, value in _meta_lies(meta)]
    before = _snapshot(learn)
    for i, (why, o_tensors, o_raw) in enumerate(cases):
        name = f"h{i}"
        save_file(o_tensors, str(good.with_name(f"{name}.opt.safetensors")), metadata=o_raw)
        save_file(m_tensors, str(good.with_name(f"{name}.safetensors")), metadata=m_raw)
        field = why.split(" ")[0]
        with pytest.raises(CheckpointError) as err:
            learn.load(name, with_opt=True)
        message = str(err.value)
        assert "\n" not in message
        expected = why if why.startswith(("dtype", "run")) else field
        assert expected in message, f"{why}: {message}"
        assert _unchanged(learn, before), why
    print(f"\noptimizer-file hardening cases: {len(cases)}")


def test_the_good_optimizer_file_still_loads(saved):  # noqa: F811
    learn, good = saved
    learn.load("good", with_opt=True)
    assert learn.opt is not None and torch.isfinite(next(learn.model.parameters())).all()
