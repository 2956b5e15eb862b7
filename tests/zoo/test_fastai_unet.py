"""DynamicUnet as fastai v1 builds it (issue 11, point 6): the expected fastai v1 state dict of a
resnet18 U-Net is written out here from fastai's layer structure (vision/models/unet.py, layers.py)
and learnkit's must map onto it key for key, shape for shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from learnkit.errors import CheckpointError
from learnkit.vision.fastai_unet import fastai_unet_keys, from_fastai_unet_state, load_fastai_unet_state
from learnkit.vision.unet import SelfAttention
from learnkit.vision.unet_learner import build_unet

N_OUT = 3


def fastai_encoder_keys() -> dict[str, tuple]:
    """fastai's ``create_body(resnet18, cut=-2)``: ``nn.Sequential(*children[:-2])`` as ``layers.0``."""
    index = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    out = {}
    for key, t in resnet18().state_dict().items():
        head, rest = key.split(".", 1)
        if head in index:
            out[f"layers.0.{index[head]}.{rest}"] = tuple(t.shape)
    return out


def bn(prefix: str, n: int) -> dict[str, tuple]:
    stats = {"weight": (n,), "bias": (n,), "running_mean": (n,), "running_var": (n,)}
    return {**{f"{prefix}.{k}": s for k, s in stats.items()}, f"{prefix}.num_batches_tracked": ()}


def conv(prefix: str, n_in: int, n_out: int, ks: int, norm: str | None) -> dict[str, tuple]:
    """fastai's ``conv_layer`` (use_activ): conv [0], ReLU [1], BatchNorm [2] with norm_type Batch."""
    if norm == "batch":
        return {f"{prefix}.0.weight": (n_out, n_in, ks, ks), **bn(f"{prefix}.2", n_out)}
    return {f"{prefix}.0.weight": (n_out, n_in, ks, ks), f"{prefix}.0.bias": (n_out,)}


def conv_no_activ(prefix: str, n_in: int, n_out: int, norm: str | None) -> dict[str, tuple]:
    """A 1x1 ``conv_layer(use_activ=False)``: conv [0], BatchNorm [1] with norm_type Batch."""
    if norm == "batch":
        return {f"{prefix}.0.weight": (n_out, n_in, 1, 1), **bn(f"{prefix}.1", n_out)}
    return {f"{prefix}.0.weight": (n_out, n_in, 1, 1), f"{prefix}.0.bias": (n_out,)}


def self_attention(prefix: str, n: int) -> dict[str, tuple]:
    """fastai's SelfAttention: spectral-normed Conv1d query/key (n//8) and value (n), no bias."""
    out = {f"{prefix}.gamma": (1,)}
    for name, n_out in (("query", n // 8), ("key", n // 8), ("value", n)):
        out |= {
            f"{prefix}.{name}.weight_orig": (n_out, n, 1),
            f"{prefix}.{name}.weight_u": (n_out,),
            f"{prefix}.{name}.weight_v": (n,),
        }
    return out


def fastai_resnet18_unet(norm: str | None = None, sa: bool = False) -> dict[str, tuple]:
    """fastai v1's ``DynamicUnet(create_body(resnet18), 3, img_size=(64, 64))`` state-dict shapes.

    At 64 px the body's stages are 32 (conv1, bn1, relu), 16 (maxpool, layer1), 8, 4 and 2 px, so
    ``sfs_idxs`` = [6, 5, 4, 2] (channels 256, 128, 64, 64) and the middle takes 512 channels.
    """
    keys = fastai_encoder_keys()
    keys |= bn("layers.1", 512)  # batchnorm_2d(512), then layers.2 is a ReLU
    keys |= conv("layers.3.0", 512, 1024, 3, norm) | conv("layers.3.1", 1024, 512, 3, norm)
    up_c = 512
    for i, x_c in enumerate([256, 128, 64, 64]):
        p, final = f"layers.{4 + i}", i == 3
        n_in = up_c // 2 + x_c
        n_mid = n_in // 2 if final else n_in  # final_div=not final: ni if final_div else ni // 2
        keys |= conv_no_activ(f"{p}.shuf.conv", up_c, (up_c // 2) * 4, norm)
        keys |= bn(f"{p}.bn", x_c)
        keys |= conv(f"{p}.conv1", n_in, n_mid, 3, norm) | conv(f"{p}.conv2", n_mid, n_mid, 3, norm)
        if sa and i == 1:  # i == len(sfs_idxs) - 3
            keys |= self_attention(f"{p}.conv2.{3 if norm == 'batch' else 2}", n_mid)
        up_c = n_mid
    assert up_c == 96
    keys |= conv_no_activ("layers.8.conv", 96, 96 * 4, norm)  # PixelShuffle_ICNR(96): 64 != 32
    # 32 px x 2 == 64: no Lambda; layers.9 is the MergeLayer; the res_block has 96 + 3 channels
    keys |= conv("layers.10.layers.0", 99, 99, 3, norm) | conv("layers.10.layers.1", 99, 99, 3, norm)
    keys |= conv_no_activ("layers.11", 99, N_OUT, norm)
    return keys


@pytest.mark.parametrize(
    "kwargs", [{}, {"self_attention": True}, {"norm_type": "batch", "self_attention": True}]
)
def test_state_dict_maps_onto_fastai_v1_key_for_key(kwargs):
    net, _ = build_unet("resnet18", N_OUT, img_size=64, **kwargs)
    mapping = fastai_unet_keys(net)
    ours = net.state_dict()
    mapped = {theirs: tuple(ours[k].shape) for k, theirs in mapping.items()}
    expected = fastai_resnet18_unet(kwargs.get("norm_type"), kwargs.get("self_attention", False))
    assert set(mapped) == set(expected)
    assert mapped == expected


def test_weight_norm_keys_are_fastai_weight_g_and_weight_v():
    net, _ = build_unet("resnet18", N_OUT, img_size=64, norm_type="weight")
    keys = set(fastai_unet_keys(net).values())
    assert {"layers.3.0.0.weight_g", "layers.3.0.0.weight_v", "layers.11.0.weight_g"} <= keys
    assert "layers.3.0.0.weight" not in keys


def test_a_fastai_state_dict_loads_and_a_wrong_one_is_refused():
    net, _ = build_unet("resnet18", N_OUT, img_size=64, self_attention=True)
    g = torch.Generator().manual_seed(0)
    state = {}
    for k, shape in fastai_resnet18_unet(sa=True).items():
        state[k] = (
            torch.randint(0, 5, shape, generator=g)
            if k.endswith("num_batches_tracked")
            else torch.randn(shape, generator=g)
        )
    load_fastai_unet_state(net, state)
    assert torch.equal(net.final_conv[0].weight, state["layers.11.0.weight"])
    assert torch.equal(
        net.blocks[1].conv2[2].query.parametrizations.weight.original,
        state["layers.5.conv2.2.query.weight_orig"],
    )
    assert torch.equal(net.encoder[4][0].conv1.weight, state["layers.0.4.0.conv1.weight"])
    del state["layers.1.bias"]
    with pytest.raises(CheckpointError, match=r"missing: layers\.1\.bias"):
        from_fastai_unet_state(net, state)


def small(**kwargs):
    return build_unet("resnet18", N_OUT, img_size=64, **kwargs)[0]


def test_conv_block_with_batch_norm_is_conv_relu_bn_and_the_final_conv_is_normed():
    net = small(norm_type="batch")
    assert [type(m) for m in net.middle_conv[0]] == [nn.Conv2d, nn.ReLU, nn.BatchNorm2d]
    assert [type(m) for m in net.final_conv] == [nn.Conv2d, nn.BatchNorm2d]
    assert net.final_conv[0].bias is None


def test_skip_and_middle_batchnorms_start_with_bias_1e_3():
    net = small()
    for b in [net.bn, *(block.bn for block in net.blocks)]:
        assert torch.equal(b.bias, torch.full_like(b.bias, 1e-3))
        assert torch.equal(b.weight, torch.ones_like(b.weight))


def test_self_attention_convs_are_spectral_normed():
    att = SelfAttention(16)
    for conv in (att.query, att.key, att.value):
        assert torch.nn.utils.parametrize.is_parametrized(conv, "weight")
        assert type(conv.parametrizations.weight[0]).__name__ == "_SpectralNorm"


def test_blur_never_blurs_the_final_upsample_and_blur_final_governs_the_last_block():
    def blurred(net):
        return [hasattr(b.shuf, "blur") for b in net.blocks], hasattr(net.upsample, "blur")

    assert blurred(small(blur=True)) == ([True] * 4, False)
    assert blurred(small(blur=True, blur_final=False)) == ([True, True, True, False], False)
    assert blurred(small(blur=False)) == ([False] * 4, False)
