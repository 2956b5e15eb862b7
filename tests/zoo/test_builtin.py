"""Every arch in the registry, built-in or plugin: it builds, runs, and its split covers it once."""

from __future__ import annotations

import os

import pytest
import torch

from learnkit import registry
from learnkit.vision.models import build_model, check_layer_groups, model_spec_for

BUILTINS = ["simple_cnn", "resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "efficientnet_b0"]
# one cheap arch of each other torchvision family runs always; the rest (large) are marked slow
SAMPLE = [
    *BUILTINS,
    "regnet_x_400mf",
    "mobilenet_v2",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "mnasnet0_5",
    "densenet121",
    "googlenet",
]
# building all ~80 (up to 600M parameters) takes many minutes: LEARNKIT_TEST_ALL_ARCHS=1 does it
_HEAVY = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.environ.get("LEARNKIT_TEST_ALL_ARCHS"), reason="set LEARNKIT_TEST_ALL_ARCHS=1"),
]
ARCHS = [a if a in SAMPLE else pytest.param(a, marks=_HEAVY) for a in registry.names()]
_WITH_CUT = [a for a in registry.names() if registry.get(a).cut is not None]
CUT_ARCHS = [a if a in SAMPLE else pytest.param(a, marks=_HEAVY) for a in _WITH_CUT]


def test_the_builtins_are_registered():
    assert set(BUILTINS) <= set(registry.names())


def test_every_torchvision_classification_model_is_in_the_zoo():
    from torchvision import models

    assert set(models.list_models(module=models)) <= set(registry.names())


def test_listing_the_zoo_builds_no_model(monkeypatch):
    from learnkit.jobs.zoo import list_archs

    def refuse(*args, **kwargs):
        raise AssertionError("zoo list built a model")

    monkeypatch.setattr("learnkit.jobs.zoo._on_meta", refuse)
    rows = list_archs()
    assert len(rows) == len(registry.names())
    assert all(r["groups"] for r in rows if r["source"] == "builtin")  # the built-ins declare theirs


def _forward(model: torch.nn.Module, size: int) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(1, 3, size, size))


@pytest.mark.parametrize("arch", ARCHS)
def test_plain_model_builds_runs_splits_and_matches_its_meta(arch):
    entry = registry.get(arch)
    model = registry.create(arch, 3)
    assert _forward(model, max(64, entry.min_size)).shape == (1, 3)
    groups = entry.layer_groups(model)
    check_layer_groups(model, groups, arch)  # every parameter in exactly one group
    if entry.cut is not None:  # body groups + head, fastai v1 style
        assert len(groups) >= 2
    assert entry.description and "\n" not in entry.description
    if "params" in entry.meta:  # documented as the count with an ImageNet head (1000 outputs)
        layers = (torch.nn.Linear, torch.nn.Conv2d)  # squeezenet's classifier is a 1x1 conv
        last = [m for m in model.modules() if isinstance(m, layers) and m.weight.shape[0] == 3][-1]
        per_output = last.weight[0].numel() + (last.bias is not None)
        assert entry.meta["params"] == sum(p.numel() for p in model.parameters()) + 997 * per_output


@pytest.mark.parametrize("arch", CUT_ARCHS)
def test_cnn_model_builds_runs_and_splits(arch):
    model, groups = build_model(model_spec_for(arch, 3))
    assert _forward(model, registry.get(arch).min_size).shape == (1, 3)
    assert groups[-1] is model[1]  # the new head is the last group
    check_layer_groups(model, groups, arch)


def test_resnet_split_is_fastai_v1s():
    model, groups = build_model(model_spec_for("resnet18", 3))
    body = model[0]
    assert len(groups) == 3
    assert list(groups[1]) == [body[6], body[7]]  # layer3, layer4
    assert list(groups[0])[-1] is body[5]  # ... up to layer2


def test_simple_cnn_is_fast_and_small():
    model = registry.create("simple_cnn", 10, channels=[8, 16])
    assert _forward(model, 16).shape == (1, 10)
    assert [type(m).__name__ for m in model.body[:3]] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert model.body[0].stride == (2, 2)


@pytest.mark.parametrize("arch", ARCHS)
def test_meta_params_and_groups_match_a_real_build(arch):
    """zoo list shows the meta's counts without building: they must be the build's."""
    from learnkit.jobs.zoo import describe_arch

    listed, built = describe_arch(arch), describe_arch(arch, build=True)
    if listed["params"] is not None:
        assert listed["params"] == built["params"]
    if listed["groups"] is not None:
        assert listed["groups"] == built["groups"]
