"""DynamicUnet and unet_learner: sizes, the flags' structure, gradients through the skips, checkpoints,
layer groups as the optimizer gets them, and a plugin's arch serving as an encoder."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch
from learnkit.checkpoint import MODEL_FORMAT, read_safetensors
from learnkit.errors import UsageError
from learnkit.learner import Learner
from learnkit.seg_metrics import segmentation_metrics
from learnkit.vision import build_model, cnn_learner
from learnkit.vision.learners import unet_learner
from learnkit.vision.unet import DynamicUnet, PixelShuffleICNR, ResBlock, SelfAttention, SigmoidRange
from learnkit.vision.unet_learner import build_unet, unet_spec_for

ODD_SIZES = [(37, 45), (64, 64), (50, 70)]


def seg_data(n: int = 8, size: int = 32, classes=("bg", "a", "b")) -> DataBunch:
    """Random images with masks of a square per image, as plain loaders."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        y[i, 4 : size // 2, 4 : size // 2] = 1 + i % (len(classes) - 1)
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    return DataBunch(dl, dl, classes=list(classes), task="segmentation", size=size, device="cpu")


def small_unet(**kwargs) -> DynamicUnet:
    """A U-Net over simple_cnn's body (4 stride-2 blocks): built in milliseconds."""
    model, _ = build_unet("simple_cnn", 3, cut=-1, img_size=64, **kwargs)
    return model


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    "arch, kwargs", [("simple_cnn", {"cut": -1}), ("resnet18", {}), ("mobilenet_v3_small", {})]
)
def test_output_size_is_the_input_size(arch, kwargs):
    model, _ = build_unet(arch, 4, img_size=64, **kwargs)
    model.eval()
    with torch.no_grad():
        for h, w in ODD_SIZES:
            assert model(torch.randn(1, 3, h, w)).shape == (1, 4, h, w)


def test_skips_are_found_where_the_encoder_shrinks():
    model = small_unet()
    assert len(model.blocks) == 3  # simple_cnn: 32, 16, 8 px skips below the 4 px bottom
    assert model.upsample is not None  # the shallowest skip is at half the input size


def test_blur_and_blur_final():
    n = len(small_unet().blocks)
    assert count(small_unet(), nn.AvgPool2d) == 0
    assert count(small_unet(blur=False, blur_final=True), nn.AvgPool2d) == 0  # blur_final alone does nothing
    everywhere = small_unet(blur=True)
    assert count(everywhere, nn.AvgPool2d) == n  # each block; fastai v1 never blurs the final upsample
    assert everywhere.upsample is not None and not hasattr(everywhere.upsample, "blur")
    not_final = small_unet(blur=True, blur_final=False)
    assert count(not_final, nn.AvgPool2d) == n - 1
    assert not hasattr(not_final.blocks[-1].shuf, "blur") and not hasattr(not_final.upsample, "blur")
    assert hasattr(not_final.blocks[0].shuf, "blur")


def test_self_attention_goes_in_the_third_block_from_the_end():
    assert count(small_unet(), SelfAttention) == 0
    model = small_unet(self_attention=True)
    assert count(model, SelfAttention) == 1
    at = max(0, len(model.blocks) - 3)
    assert count(model.blocks[at], SelfAttention) == 1


def test_last_cross_and_bottle():
    crossed, plain = small_unet(), small_unet(last_cross=False)
    assert count(crossed, ResBlock) == 1 and count(plain, ResBlock) == 0
    width = crossed.final_conv[0].in_channels
    assert width == plain.final_conv[0].in_channels + 3  # the input image's channels joined in
    assert crossed.cross.convs[0][0].out_channels == width
    assert small_unet(bottle=True).cross.convs[0][0].out_channels == width // 2
    assert count(small_unet(last_cross=False, bottle=True), ResBlock) == 0  # bottle lives in the cross block


def test_y_range_squeezes_the_outputs():
    assert small_unet().y_range is None
    model = small_unet(y_range=(-1.0, 2.0)).eval()
    assert count(model, SigmoidRange) == 1
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32) * 100)
    assert out.min() >= -1 and out.max() <= 2


def test_norm_type_changes_the_decoder_convs():
    def decoder_count(model, kind):
        return sum(count(m, kind) for m in model.decoder())

    none, batch, weight = small_unet(), small_unet(norm_type="batch"), small_unet(norm_type="weight")
    # without norm, the decoder's only BatchNorms are the one after the encoder and one per skip
    assert decoder_count(none, nn.BatchNorm2d) == 1 + len(none.blocks)
    assert decoder_count(batch, nn.BatchNorm2d) > decoder_count(none, nn.BatchNorm2d)
    assert not any(parametrize.is_parametrized(m) for m in none.modules())
    convs = [m for m in weight.decoder() for m in m.modules() if isinstance(m, nn.Conv2d)]
    # every decoder conv, the final 1x1 too (fastai v1 passes norm_type to it)
    assert sum(parametrize.is_parametrized(c, "weight") for c in convs) == len(convs)
    with pytest.raises(UsageError, match="norm_type"):
        small_unet(norm_type="group")


def test_pixel_shuffle_starts_icnr():
    up = PixelShuffleICNR(4, 2)
    w = up.conv[0].weight
    assert torch.equal(w[0::4], w[1::4]) and torch.equal(w[0::4], w[3::4])  # one kernel per 2x2 neighbourhood
    out = up(torch.randn(1, 4, 3, 3))
    assert torch.equal(out[..., 0::2, 0::2], out[..., 1::2, 1::2])  # no checkerboard at init


def test_skip_connections_carry_gradients_to_the_encoder():
    model = small_unet()
    for p in model.middle_conv.parameters():
        nn.init.zeros_(p)  # the path through the bottom now passes no gradient
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    body = model.encoder[0]  # simple_cnn's body: (conv, bn, relu) x 4, skips after the first three relus
    assert body[-3].weight.grad.abs().sum() == 0  # the bottom conv feeds only the silenced path
    assert body[0].weight.grad.abs().sum() > 0  # the first conv learns, through its skip


def test_a_deep_copy_hooks_into_its_own_encoder():
    model = small_unet().eval()
    twin = copy.deepcopy(model)
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(twin(x), model(x))
        nn.init.zeros_(twin.encoder[0][0].weight)  # hooks read the copy's encoder
        assert not torch.allclose(twin(x), model(x))


def test_an_encoder_that_never_shrinks_cannot_serve():
    with pytest.raises(UsageError, match="cannot serve"):
        DynamicUnet(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), 2, img_size=16)


def test_unet_learner_checkpoint_rebuilds_itself_from_its_spec(tmp_path):
    data = seg_data()
    learn = unet_learner(
        data, "simple_cnn", cut=-1, self_attention=True, blur=True, metrics=segmentation_metrics()
    )
    learn.path = tmp_path
    learn.fit(1, 1e-3)
    path = learn.save("seg")
    _, meta = read_safetensors(path, expect_format=MODEL_FORMAT)
    spec = meta["model_spec"]
    assert spec == {
        "kind": "unet",
        "arch": "simple_cnn",
        "n_out": 3,
        "kwargs": {"cut": -1, "blur": True, "self_attention": True},
    }
    assert meta["task"] == "segmentation"
    model, groups = build_model(spec)  # the checkpoint alone says what to build
    again = Learner(
        data, model, layer_groups=groups, model_spec=spec, metrics=segmentation_metrics(), path=tmp_path
    )
    again.load("seg", with_opt=False)
    assert again.validate() == pytest.approx(learn.validate())


def _opt_names(learn) -> list[set[str]]:
    """Parameter names per layer group as the optimizer holds them (two param groups per layer group)."""
    names = {id(p): n for n, p in learn.model.named_parameters()}
    groups = learn.opt.param_groups
    return [{names[id(p)] for g in groups[i : i + 2] for p in g["params"]} for i in range(0, len(groups), 2)]


def _shown_names(shown: dict) -> list[set[str]]:
    """Parameter-owning layer names per group of ``zoo show``."""
    return [{layer["name"] for layer in g["layers"] if layer["params"]} for g in shown["groups"]]


def _owners(names: set[str]) -> set[str]:
    return {n.rsplit(".", 1)[0] for n in names}


def test_zoo_show_and_summary_agree_with_the_optimizer(tmp_path):
    from learnkit.jobs import info
    from learnkit.jobs.zoo import show_arch

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 2, (8,), generator=g)
    dl = DataLoader(TensorDataset(x, y), batch_size=4)
    cnn = cnn_learner(
        DataBunch(dl, dl, classes=["a", "b"], device="cpu", size=32),
        "resnet18",
        pretrained=False,
        path=tmp_path,
    )
    cnn.create_opt(1e-3)
    shown = show_arch("resnet18", n_out=2)
    assert [_owners(s) for s in _opt_names(cnn)] == _shown_names(shown)
    assert [g["params"] for g in shown["groups"]] == [
        sum(p.numel() for p in grp.parameters()) for grp in cnn.layer_groups
    ]

    unet = unet_learner(seg_data(), "resnet18", pretrained=False, path=tmp_path)
    unet.create_opt(1e-3)
    shown = show_arch("resnet18", n_out=3, unet=True)
    assert [_owners(s) for s in _opt_names(unet)] == _shown_names(shown)
    unet.save("seg")
    summary = info.summary(model="seg", path=tmp_path)
    assert summary["layer_groups"] == len(unet.layer_groups) == 3
    by_name = {row["name"]: row["group"] for row in summary["layers"] if row["params"]}
    for i, owners in enumerate(_shown_names(shown)):
        assert {by_name[n] for n in owners if n in by_name} == {i}


PLUGIN = """
from torch import nn
from learnkit.zoo import register

def _split(model):
    return [model[:3], model[3:5], model[5:]]

@register("pluggy_seg", split=_split, cut=-3, meta={"description": "a plugin's encoder", "min_size": 16})
def pluggy_seg(n_out, width=8):
    return nn.Sequential(
        nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, n_out),
    )
"""


def test_a_plugin_arch_serves_as_a_unet_encoder_and_rebuilds_by_name(fresh_registry, make_plugin, tmp_path):
    make_plugin("lk_pluggy_seg", "lk_pluggy_seg_mod", PLUGIN)
    fresh_registry._reset()
    assert fresh_registry.get("pluggy_seg").source == "lk_pluggy_seg"
    data = seg_data(size=16)
    learn = unet_learner(data, "pluggy_seg", path=tmp_path)
    assert len(learn.layer_groups) == 3  # the plugin's two body groups + the decoder (its head is cut off)
    learn.fit(1, 1e-3)
    path = learn.save("plug")
    _, meta = read_safetensors(path, expect_format=MODEL_FORMAT)
    assert meta["model_spec"] == unet_spec_for("pluggy_seg", 3)
    model, groups = build_model(meta["model_spec"])
    again = Learner(data, model, layer_groups=groups, path=tmp_path)
    again.load("plug", with_opt=False)
    assert again.validate() == pytest.approx(learn.validate())
