"""Optimizer state flattened to safetensors and back: an exact round trip, refused for other models."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from learnkit.checkpoint import (
    OPT_FORMAT,
    flatten_optimizer_state,
    optimizer_param_names,
    read_safetensors,
    unflatten_optimizer_state,
    write_safetensors,
)
from learnkit.checkpoint_schema import TensorInfo
from learnkit.errors import CheckpointError
from learnkit.opt_schema import _check_rng
from learnkit.persist import _rng_state, _set_rng_state


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _optimizer(kind: str, model: nn.Module) -> torch.optim.Optimizer:
    groups = [
        {"params": model[0].parameters(), "lr": 1e-2},
        {"params": [*model[1].parameters(), *model[3].parameters()]},
    ]
    if kind == "adam":
        return torch.optim.Adam(groups, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9, nesterov=True)
    return torch.optim.SGD(groups, lr=0.1)  # no momentum: no state tensors at all


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _assert_same(a, b, where="state"):
    assert type(a) is type(b), f"{where}: {type(a)} vs {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("kind", ["adam", "sgd", "sgd-plain"])
def test_round_trip_through_a_file_is_exact(tmp_path, kind):
    model = _model()
    opt = _optimizer(kind, model)
    _steps(model, opt, 3, seed=1)
    names = optimizer_param_names(opt, model)
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias"]
    tensors, meta = flatten_optimizer_state(opt.state_dict(), names)
    if kind == "adam":
        assert {"state.0.weight.step", "state.0.weight.exp_avg", "state.3.bias.exp_avg_sq"} <= set(tensors)
        assert meta["param_groups"][0]["betas"] == {"__tuple__": [0.9, 0.99]}
    if kind == "sgd":
        assert set(tensors) == {f"state.{n}.momentum_buffer" for n in names}
    path = write_safetensors(tmp_path / "m.opt.safetensors", tensors, {**meta, "format": OPT_FORMAT})
    read_tensors, read_meta = read_safetensors(path)  # a bare state: not a whole learnkit opt file

    twin = copy.deepcopy(model)  # the same weights, a brand-new optimizer
    twin_opt = _optimizer(kind, twin)
    twin_opt.load_state_dict(
        unflatten_optimizer_state(read_tensors, read_meta, optimizer_param_names(twin_opt, twin))
    )
    _assert_same(twin_opt.state_dict(), opt.state_dict())

    _steps(model, opt, 2, seed=2)
    _steps(twin, twin_opt, 2, seed=2)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_tensor_hyper_parameters_survive(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    _steps(model, opt, 1, seed=0)
    names = optimizer_param_names(opt, model)
    tensors, meta = flatten_optimizer_state(opt.state_dict(), names)
    assert "param_groups.0.lr" in tensors
    _assert_same(unflatten_optimizer_state(tensors, meta, names), opt.state_dict())


def test_state_for_other_parameters_is_refused():
    model = _model()
    opt = _optimizer("adam", model)
    _steps(model, opt, 1, seed=0)
    names = optimizer_param_names(opt, model)
    tensors, meta = flatten_optimizer_state(opt.state_dict(), names)
    other = [*names[:-1], "4.bias"]
    with pytest.raises(
        CheckpointError, match=r"for other parameters \(missing: \['4.bias'\], unexpected: \['3.bias'\]"
    ):
        unflatten_optimizer_state(tensors, meta, other)
    with pytest.raises(CheckpointError, match="order differs"):
        unflatten_optimizer_state(tensors, meta, list(reversed(names)))
    with pytest.raises(CheckpointError, match="lacks 'param_groups'"):
        unflatten_optimizer_state(tensors, {"format": OPT_FORMAT}, names)
    del tensors["state.0.weight.exp_avg"]
    with pytest.raises(CheckpointError, match="tensor 'state.0.weight.exp_avg' is missing"):
        unflatten_optimizer_state(tensors, meta, names)
    with pytest.raises(ValueError, match="5 parameter names for an optimizer of 6"):
        flatten_optimizer_state(opt.state_dict(), names[:5])


def test_optimizer_param_names_refuses_a_foreign_parameter():
    model = _model()
    opt = torch.optim.SGD([*model.parameters(), nn.Parameter(torch.ones(1))], lr=0.1)
    with pytest.raises(ValueError, match="not in the model"):
        optimizer_param_names(opt, model)


# --- RNG states, one per CUDA device ---
def _rng_with_cuda(indices) -> tuple[dict, dict]:
    tensors, meta = _rng_state()  # on this machine: CPU states only
    cuda = {f"rng.cuda.{i}": torch.full((8,), i, dtype=torch.uint8) for i in indices}
    return {**tensors, **cuda}, json.loads(json.dumps(meta))


def test_cuda_rng_states_are_restored_in_device_order_past_ten_devices(monkeypatch):
    tensors, meta = _rng_with_cuda([10, 2, 0, 11, 1, 9, 3, 4, 5, 6, 7, 8])
    restored: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 12)
    monkeypatch.setattr(
        torch.cuda, "set_rng_state_all", lambda states: restored.extend(int(s[0]) for s in states)
    )
    _set_rng_state(tensors, meta)
    assert restored == list(range(12))  # before: sorted as text, device 2 got the state of device 10


def test_cuda_rng_states_must_be_numbered_from_zero_without_gaps():
    for indices in ([0, 1, 2], []):
        tensors, meta = _rng_with_cuda(indices)
        _check_rng(meta, _infos(tensors), "f")
    for indices in ([0, 2], [1], ["x"], ["01"], ["-1"]):
        tensors, meta = _rng_with_cuda([])
        tensors |= {f"rng.cuda.{i}": torch.zeros(8, dtype=torch.uint8) for i in indices}
        with pytest.raises(CheckpointError, match="rng.cuda"):
            _check_rng(meta, _infos(tensors), "f")


def _infos(tensors: dict) -> dict:
    dtypes = {torch.uint8: "U8", torch.int64: "I64"}
    return {
        k: TensorInfo(dtypes[t.dtype], tuple(t.shape), 0, t.numel() * t.element_size())
        for k, t in tensors.items()
    }
