"""Builders and layer-group splits for torchvision's classification models, never with weights.

``weights=None`` always: nothing is downloaded. A local state dict comes in through
``--pretrained FILE`` instead. torch is imported inside the functions, so listing the zoo stays
torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from learnkit.spec_kwargs import FLAG, PROB, Kwarg


def torchvision_builder(fn_name: str, **fixed: Any) -> Callable[..., Any]:
    """A zoo builder ``builder(n_out, **kwargs)`` for ``torchvision.models.<fn_name>``.

    ``fixed`` are keyword arguments always passed (``aux_logits=False`` for GoogLeNet/Inception:
    a training forward then returns plain logits).
    """

    def build(n_out: int, **kwargs: Any) -> Any:
        from torchvision import models

        return getattr(models, fn_name)(weights=None, num_classes=n_out, **{**fixed, **kwargs})

    build.__name__ = build.__qualname__ = fn_name
    build.__doc__ = f"torchvision's {fn_name} with ``n_out`` classes and no pretrained weights."
    return build


def split_resnet(model: Any) -> list[Any]:
    """fastai v1's ResNet split: stem to layer2, layer3 and layer4, then the head."""
    stem = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2]
    return [stem, [model.layer3, model.layer4], [model.avgpool, model.fc]]


def features_split(at: int | None = None) -> Callable[[Any], list[Any]]:
    """A split for models built as ``features`` (+ ``avgpool``), ``classifier`` (MobileNet,
    EfficientNet, ConvNeXt, DenseNet, VGG...).

    ``features[:at]`` and ``features[at:]`` are the body groups; pick ``at`` where the stride-16
    stage starts, as ResNet's split does at layer3 (default: the middle).
    """
    return sequence_split("features", at, head=("avgpool", "classifier"))


def regnet_split(model: Any) -> list[Any]:
    """RegNet: stem and the first two trunk stages, the last two, then the head."""
    trunk = list(model.trunk_output.children())
    return [[model.stem, *trunk[:2]], trunk[2:], [model.avgpool, model.fc]]


def children_split(at: int) -> Callable[[Any], list[Any]]:
    """Split the model's own children: ``[:at]``, ``[at:-1]`` and the last one (the head)."""

    def split(model: Any) -> list[Any]:
        kids = list(model.children())
        return [kids[:at], kids[at:-1], kids[-1:]]

    return split


def sequence_split(
    attr: str, at: int | None = None, head: tuple[str, ...] = ("classifier",), before: tuple[str, ...] = ()
) -> Callable:
    """Split ``model.<attr>`` (a Sequential of stages) at ``at`` (default: its middle), then the head
    modules named in ``head`` (those the model has); ``before`` modules join the first group."""

    def split(model: Any) -> list[Any]:
        blocks = list(getattr(model, attr).children())
        cut = len(blocks) // 2 if at is None else at
        tail = [getattr(model, name) for name in head if hasattr(model, name)]
        return [[getattr(model, name) for name in before] + blocks[:cut], blocks[cut:], tail]

    return split


def vit_split(model: Any) -> list[Any]:
    """ViT: patch embedding, class token, positions and the first half of the encoder; the second
    half and the final norm; the head. Parameters that sit on a module itself (class token,
    position embedding) are carried by a small holder module, so each group is a module."""
    from torch import nn

    class _Holder(nn.Module):
        def __init__(self, modules: list[Any], params: dict[str, Any]) -> None:
            super().__init__()
            self.parts = nn.ModuleList(modules)
            for name, p in params.items():
                self.register_parameter(name, p)

    layers = list(model.encoder.layers.children())
    half = len(layers) // 2
    first = _Holder(
        [model.conv_proj, *layers[:half]],
        {"class_token": model.class_token, "pos_embedding": model.encoder.pos_embedding},
    )
    return [first, [*layers[half:], model.encoder.ln], [model.heads]]


_SWIN_HEAD = ("norm", "permute", "avgpool", "flatten", "head")
# family -> (split, cut, min_size, fixed builder kwargs); cut None: used as it is (its own head)
_FAMILIES: dict[str, tuple[Callable, int | None, int, dict]] = {
    "resnet": (split_resnet, -2, 32, {}),
    "regnet": (regnet_split, -2, 32, {}),
    "convnext": (features_split(4), -2, 32, {}),
    "efficientnet": (features_split(4), -2, 32, {}),
    "mobilenet_v2": (features_split(7), -1, 32, {}),
    "mobilenet_v3_small": (features_split(4), -2, 32, {}),
    "mobilenet_v3_large": (features_split(7), -2, 32, {}),
    "densenet": (features_split(8), -1, 32, {}),
    "squeezenet": (features_split(), -1, 32, {}),
    "vgg": (features_split(), -2, 32, {}),
    "alexnet": (features_split(), -2, 63, {}),
    "shufflenet": (children_split(3), -1, 32, {}),
    "mnasnet": (sequence_split("layers"), -1, 32, {}),
    "googlenet": (children_split(8), None, 32, {"aux_logits": False, "init_weights": True}),
    "inception": (children_split(7), None, 75, {"aux_logits": False, "init_weights": True}),
    "vit": (vit_split, None, 224, {}),
    "swin": (sequence_split("features", 4, head=_SWIN_HEAD), None, 32, {}),
    "maxvit": (sequence_split("blocks", 2, before=("stem",)), None, 224, {}),
}
# family -> the builder options a checkpoint may give (learnkit.spec_kwargs): those that shape the
# architecture (or only its dropout), never weights, progress, a norm layer or a block class
_FAMILY_KWARGS: dict[str, dict[str, Kwarg]] = {
    "resnet": {
        "zero_init_residual": FLAG,
        "groups": Kwarg("int", 1, 256),
        "width_per_group": Kwarg("int", 1, 1024),
        "replace_stride_with_dilation": Kwarg("bool", lengths=(3, 3), scalar=False),
    },
    "convnext": {"stochastic_depth_prob": PROB, "layer_scale": Kwarg("float", 0.0, 1.0)},
    "efficientnet": {"dropout": PROB, "stochastic_depth_prob": PROB},
    "mobilenet_v2": {"dropout": PROB, "width_mult": Kwarg("float", 0.05, 4.0)},
    "mobilenet_v3_small": {"dropout": PROB},
    "mobilenet_v3_large": {"dropout": PROB},
    "densenet": {"drop_rate": PROB},
    "squeezenet": {"dropout": PROB},
    "vgg": {"dropout": PROB},
    "alexnet": {"dropout": PROB},
    "mnasnet": {"dropout": PROB},
    "googlenet": {"dropout": PROB},
    "inception": {"dropout": PROB},
    "vit": {"image_size": Kwarg("int", 16, 4096), "dropout": PROB, "attention_dropout": PROB},
    "swin": {"dropout": PROB, "attention_dropout": PROB, "stochastic_depth_prob": PROB},
    "maxvit": {"stochastic_depth_prob": PROB, "mlp_dropout": PROB, "attention_dropout": PROB},
}
# every classification model of torchvision 0.2x (torchvision.models.list_models), by family
TORCHVISION_ARCHS: dict[str, str] = {
    **{n: "resnet" for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{n: "resnet" for n in ("resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d")},
    **{n: "resnet" for n in ("wide_resnet50_2", "wide_resnet101_2")},
    **{f"regnet_x_{s}": "regnet" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")},
    **{f"regnet_y_{s}": "regnet" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")},
    "regnet_y_128gf": "regnet",
    **{f"convnext_{s}": "convnext" for s in ("tiny", "small", "base", "large")},
    **{f"efficientnet_b{i}": "efficientnet" for i in range(8)},
    **{f"efficientnet_v2_{s}": "efficientnet" for s in ("s", "m", "l")},
    "mobilenet_v2": "mobilenet_v2",
    "mobilenet_v3_small": "mobilenet_v3_small",
    "mobilenet_v3_large": "mobilenet_v3_large",
    **{f"densenet{n}": "densenet" for n in (121, 161, 169, 201)},
    "squeezenet1_0": "squeezenet",
    "squeezenet1_1": "squeezenet",
    **{f"vgg{n}{bn}": "vgg" for n in (11, 13, 16, 19) for bn in ("", "_bn")},
    "alexnet": "alexnet",
    **{f"shufflenet_v2_{s}": "shufflenet" for s in ("x0_5", "x1_0", "x1_5", "x2_0")},
    **{f"mnasnet{s}": "mnasnet" for s in ("0_5", "0_75", "1_0", "1_3")},
    "googlenet": "googlenet",
    "inception_v3": "inception",
    **{f"vit_{s}": "vit" for s in ("b_16", "b_32", "l_16", "l_32", "h_14")},
    **{f"swin_{s}": "swin" for s in ("t", "s", "b", "v2_t", "v2_s", "v2_b")},
    "maxvit_t": "maxvit",
}


# parameter counts with 1000 outputs (torchvision 0.29; regnets cannot be built on the meta device)
_PARAMS: dict[str, int] = {
    "alexnet": 61_100_840,
    "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
    "convnext_small": 50_223_688,
    "convnext_tiny": 28_589_128,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
    "efficientnet_v2_l": 118_515_272,
    "efficientnet_v2_m": 54_139_356,
    "efficientnet_v2_s": 21_458_488,
    "googlenet": 6_624_904,
    "inception_v3": 23_834_568,
    "maxvit_t": 30_919_624,
    "mnasnet0_5": 2_218_512,
    "mnasnet0_75": 3_170_208,
    "mnasnet1_0": 4_383_312,
    "mnasnet1_3": 6_282_256,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "resnext50_32x4d": 25_028_904,
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "swin_b": 87_768_224,
    "swin_s": 49_606_258,
    "swin_t": 28_288_354,
    "swin_v2_b": 87_930_848,
    "swin_v2_s": 49_737_442,
    "swin_v2_t": 28_351_570,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "vit_b_16": 86_567_656,
    "vit_b_32": 88_224_232,
    "vit_h_14": 632_045_800,
    "vit_l_16": 304_326_632,
    "vit_l_32": 306_535_400,
    "wide_resnet101_2": 126_886_696,
    "wide_resnet50_2": 68_883_240,
}


def torchvision_entries() -> dict[str, dict[str, Any]]:
    """``register`` keyword arguments per torchvision arch: builder, split, cut and meta.

    Builds nothing and imports no torch: listing the zoo stays fast.
    """
    entries = {}
    for name, family in TORCHVISION_ARCHS.items():
        split, cut, min_size, fixed = _FAMILIES[family]
        entries[name] = {
            "builder": torchvision_builder(name, **fixed),
            "split": split,
            "cut": cut,
            "meta": {
                "description": f"{name} (torchvision, {family} family)",
                "min_size": min_size,
                "groups": 3,
                **({"params": _PARAMS[name]} if name in _PARAMS else {}),
                "kwargs": dict(_FAMILY_KWARGS.get(family, {})),
            },
        }
    return entries
