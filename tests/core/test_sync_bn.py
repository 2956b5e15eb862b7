"""``--sync-bn``: under DDP the model's BatchNorm layers become SyncBatchNorm, sharing their
parameters and buffers, in the model and in the layer groups (which hold the same modules)."""

from __future__ import annotations

from torch import nn

from learnkit import Learner
from learnkit.callbacks.distributed import sync_batchnorm
from learnkit.jobs.config import RunConfig
from tests.core.tiny import tiny_data


def test_batchnorm_layers_become_sync_batchnorm_with_the_same_tensors():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Sequential(nn.ReLU(), nn.BatchNorm1d(8)))
    model.append(nn.Linear(8, 2))
    learn = Learner(tiny_data(), model, layer_groups=[model[:2], model[2:]])
    weight, running = model[1].weight, model[2][1].running_mean
    assert sync_batchnorm(learn) == 2
    assert isinstance(model[1], nn.SyncBatchNorm) and isinstance(model[2][1], nn.SyncBatchNorm)
    assert model[1].weight is weight and model[2][1].running_mean is running
    in_groups = [m for g in learn.layer_groups for m in g.modules()]
    assert not any(type(m) is nn.BatchNorm1d for m in in_groups)
    assert sync_batchnorm(learn) == 0  # already synced


def test_sync_bn_is_a_schema_option_off_by_default():
    config = RunConfig.from_flat("fit", data="d", arch="simple_cnn")
    assert config.runtime.sync_bn is False and config.checkpoint.reshard is False
    assert RunConfig.from_flat("fit", data="d", arch="simple_cnn", sync_bn=True).runtime.sync_bn
