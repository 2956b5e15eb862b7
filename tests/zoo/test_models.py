"""Model specs: the JSON a checkpoint stores rebuilds the same model."""

from __future__ import annotations

import json

import pytest
import torch

from learnkit.errors import LearnkitError, UsageError
from learnkit.vision import models
from learnkit.vision.models import build_model, check_layer_groups, model_spec_for


def test_spec_kind_follows_the_cut():
    assert model_spec_for("resnet18", 4) == {"kind": "cnn", "arch": "resnet18", "n_out": 4, "kwargs": {}}
    assert model_spec_for("simple_cnn", 4)["kind"] == "plain"
    assert model_spec_for("simple_cnn", 4, cut=-1)["kind"] == "cnn"  # a cut given makes a head


def test_spec_drops_none_and_default_head_options_for_plain_archs():
    spec = model_spec_for("simple_cnn", 2, ps=0.5, lin_ftrs=None, concat_pool=True, channels=[8])
    assert spec["kwargs"] == {"channels": [8]}
    with pytest.raises(UsageError, match="no cut for a new head, so it takes no ps"):
        model_spec_for("simple_cnn", 2, ps=0.2)


def test_spec_round_trips_through_json_to_the_same_model():
    spec = model_spec_for("resnet18", 5, lin_ftrs=[32], ps=0.25)
    torch.manual_seed(0)
    model, groups = build_model(json.loads(json.dumps(spec)))
    again, _ = build_model(json.loads(json.dumps(spec)))
    assert list(model.state_dict()) == list(again.state_dict())
    assert [m.out_features for m in model[1] if isinstance(m, torch.nn.Linear)] == [32, 5]
    assert len(groups) == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "cnn", "arch": "resnet19", "n_out": 2}, "unknown arch 'resnet19'; did you mean"),
        ({"kind": "gan", "arch": "resnet18", "n_out": 2}, "unknown model kind 'gan'"),
        ({"arch": "resnet18"}, "needs kind, arch and n_out"),
        (
            {"kind": "plain", "arch": "simple_cnn", "n_out": 2, "kwargs": {"depth": 3}},
            "takes no option depth",
        ),
        ({"kind": "plain", "arch": "simple_cnn", "n_out": 2, "kwargs": [1]}, "must be a mapping"),
    ],
)
def test_bad_specs_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        build_model(spec)


def test_unet_is_a_model_kind():
    assert set(models.MODEL_KINDS) >= {"cnn", "plain", "unet"}
    with pytest.raises(UsageError, match="known: cnn, plain, unet"):
        build_model({"kind": "unet3d", "arch": "resnet18", "n_out": 2})


def test_bad_n_out_is_refused():
    with pytest.raises(UsageError, match="positive integer"):
        model_spec_for("resnet18", 0)


def test_check_layer_groups_catches_gaps_and_overlaps():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    check_layer_groups(model, [model[0], model[1]])
    with pytest.raises(LearnkitError, match="left out"):
        check_layer_groups(model, [model[0]])
    with pytest.raises(LearnkitError, match="in two groups"):
        check_layer_groups(model, [model, model[1]])
