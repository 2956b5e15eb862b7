"""A third-party plugin on a temporary path: listed, trained one step, saved and rebuilt by name."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch
from learnkit.checkpoint import MODEL_FORMAT, read_safetensors
from learnkit.learner import Learner
from learnkit.vision import build_model, cnn_learner

PLUGIN = """
from torch import nn
from learnkit.zoo import register

def _split(model):
    return [model[:3], model[3:]]

@register("pluggy_net", split=_split, cut=-2, meta={"description": "a plugin's net", "min_size": 8})
def pluggy_net(n_out, width=6):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, n_out),
    )
"""


def _data() -> DataBunch:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 3, (16,), generator=g)
    return DataBunch(
        DataLoader(TensorDataset(x, y), batch_size=8),
        DataLoader(TensorDataset(x, y), batch_size=8),
        classes=["a", "b", "c"],
    )


def test_plugin_arch_trains_saves_and_rebuilds_from_its_checkpoint(fresh_registry, make_plugin, tmp_path):
    make_plugin("lk_pluggy", "lk_pluggy_mod", PLUGIN)
    fresh_registry._reset()
    assert fresh_registry.names("pluggy*") == ["pluggy_net"]
    assert fresh_registry.get("pluggy_net").source == "lk_pluggy"

    data = _data()
    learn = cnn_learner(data, "pluggy_net", lin_ftrs=[8], path=tmp_path)
    assert len(learn.layer_groups) == 3  # the plugin's two body groups + the new head
    learn.fit(1, 1e-2)
    path = learn.save("pluggy")
    _, meta = read_safetensors(path, expect_format=MODEL_FORMAT)
    assert meta["model_spec"]["arch"] == "pluggy_net"

    model, groups = build_model(meta["model_spec"])  # the checkpoint alone says what to build
    again = Learner(data, model, layer_groups=groups, model_spec=meta["model_spec"], path=tmp_path)
    again.load("pluggy", with_opt=False)
    assert again.validate() == learn.validate()
