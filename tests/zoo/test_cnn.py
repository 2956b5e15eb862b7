"""Transfer-learning models: fastai v1's head and body, local pretrained weights, cnn_learner."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import registry
from learnkit.checkpoint import write_safetensors
from learnkit.errors import CheckpointError, UsageError
from learnkit.vision import (
    AdaptiveConcatPool2d,
    cnn_learner,
    create_body,
    create_cnn,
    create_cnn_model,
    create_head,
    num_features_model,
)


def test_concat_pool_puts_max_then_average():
    x = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert AdaptiveConcatPool2d()(x).flatten().tolist() == [3.0, 7.0, 1.5, 5.5]


def test_create_head_matches_fastai_v1():
    head = create_head(1024, 7)
    kinds = [type(m).__name__ for m in head]
    assert kinds == [
        "AdaptiveConcatPool2d", "Flatten",
        "BatchNorm1d", "Dropout", "Linear", "ReLU",
        "BatchNorm1d", "Dropout", "Linear",
    ]  # fmt: skip
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.25, 0.5]  # half the last p before it
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, nn.Linear)] == [
        (1024, 512),
        (512, 7),
    ]


def test_create_head_options():
    head = create_head(64, 3, lin_ftrs=[16, 8], ps=[0.1, 0.2, 0.0], concat_pool=False, bn_final=True)
    assert isinstance(head[0], nn.AdaptiveAvgPool2d)
    assert [m.out_features for m in head if isinstance(m, nn.Linear)] == [16, 8, 3]
    assert [m.p for m in head if isinstance(m, nn.Dropout)] == [0.1, 0.2]  # p=0 adds no dropout
    assert isinstance(head[-1], nn.BatchNorm1d) and head[-1].num_features == 3
    with pytest.raises(UsageError, match="ps needs 1 or 3"):
        create_head(64, 3, lin_ftrs=[16, 8], ps=[0.1, 0.2])


def test_create_body_cuts_and_shares_modules():
    full = registry.create("resnet18", 10)
    body = create_body(full, -2)
    assert len(body) == 8 and body[0] is full.conv1 and body[-1] is full.layer4
    assert num_features_model(body) == 512
    assert create_body(full, lambda m: m.layer1) is full.layer1
    with pytest.raises(UsageError, match="empty body"):
        create_body(full, -10)


def test_create_cnn_model_forward_and_parts():
    model = create_cnn_model("mobilenet_v3_small", 4, lin_ftrs=[64], concat_pool=False)
    model.eval()
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 4)
    assert model[1][2].num_features == 576  # avg-pooled features of mobilenet_v3_small


def test_create_cnn_model_refuses_an_arch_without_a_cut():
    with pytest.raises(UsageError, match="'simple_cnn' has no cut point"):
        create_cnn_model("simple_cnn", 2)


@pytest.fixture(scope="module")
def imagenet_like():
    """A resnet18 with a 1000-class head and weights unlike a fresh model's."""
    torch.manual_seed(1)
    full = registry.create("resnet18", 1000)
    with torch.no_grad():
        for p in full.parameters():
            p.add_(0.5)
    return full


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_pretrained_file_loads_into_the_body_and_ignores_the_old_head(tmp_path, imagenet_like, suffix):
    file = tmp_path / f"resnet18{suffix}"
    state = imagenet_like.state_dict()
    if suffix == ".pth":
        torch.save(state, file)
    else:
        write_safetensors(file, state, {})
    model = create_cnn_model("resnet18", 3, pretrained=file)
    body = model[0]
    assert torch.equal(body[0].weight, imagenet_like.conv1.weight)
    assert torch.equal(body[7][1].bn2.running_var, imagenet_like.layer4[1].bn2.running_var)
    assert model[1][-1].out_features == 3


def test_pretrained_file_that_does_not_fit_is_a_checkpoint_error(tmp_path):
    file = tmp_path / "resnet34.safetensors"
    write_safetensors(file, registry.create("resnet34", 10).state_dict(), {})
    with pytest.raises(CheckpointError) as err:
        create_cnn_model("resnet18", 3, pretrained=file)
    message = str(err.value)
    assert "weights do not fit" in message and "unexpected: layer1.2." in message and "\n" not in message
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        create_cnn_model("resnet18", 3, pretrained=tmp_path / "nope.safetensors")


def test_plain_create_with_pretrained_needs_an_exact_fit(tmp_path):
    torch.manual_seed(0)
    source = registry.create("simple_cnn", 5, channels=[4, 8])
    file = tmp_path / "simple.safetensors"
    write_safetensors(file, source.state_dict(), {})
    loaded = registry.create("simple_cnn", 5, pretrained=file, channels=[4, 8])
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), loaded.state_dict().values()))
    with pytest.raises(CheckpointError, match=r"shape/dtype mismatch: head.2.weight \[5, 8\] vs \[3, 8\]"):
        registry.create("simple_cnn", 3, pretrained=file, channels=[4, 8])


class _Data:
    """The little of a DataBunch that a Learner's constructor reads."""

    c, classes, device = 3, ["a", "b", "c"], None
    loss_func = nn.CrossEntropyLoss()
    train_dl = valid_dl = DataLoader(TensorDataset(torch.zeros(2, 3, 32, 32), torch.zeros(2).long()))


def test_cnn_learner_splits_into_the_zoos_groups():
    learn = cnn_learner(_Data(), "resnet18", pretrained=False, lin_ftrs=[16])
    assert len(learn.layer_groups) == 3 and learn.layer_groups[-1] is learn.model[1]
    assert learn.model_spec == {
        "kind": "cnn",
        "arch": "resnet18",
        "n_out": 3,
        "kwargs": {"lin_ftrs": [16], "ps": 0.5, "concat_pool": True, "bn_final": False},
    }
    assert all(p.requires_grad for p in learn.model.parameters())  # no pretrained weights: not frozen
    assert create_cnn is cnn_learner


def test_cnn_learner_freezes_the_body_when_pretrained(tmp_path, imagenet_like):
    file = tmp_path / "r18.safetensors"
    write_safetensors(file, imagenet_like.state_dict(), {})
    learn = cnn_learner(_Data(), "resnet18", pretrained=file)
    body, head = learn.model
    assert not body[0].weight.requires_grad and body[1].weight.requires_grad  # train_bn keeps BN on
    assert all(p.requires_grad for p in head.parameters())
    assert "pretrained" not in str(learn.model_spec)  # a checkpoint holds the weights themselves


def test_cnn_learner_on_a_plain_arch_and_with_split_on():
    learn = cnn_learner(_Data(), "simple_cnn", split_on=lambda m: [m.body[:3], m.body[3:], m.head])
    assert learn.model_spec["kind"] == "plain" and learn.model.head[-1].out_features == 3
    assert len(learn.layer_groups) == 3
