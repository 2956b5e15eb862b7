"""learnkit's built-in archs, registered when this module is imported.

learnkit's own pyproject names this module in the ``learnkit.zoo`` entry-point group, so the
built-ins load the way any third-party plugin does. The builders live beside it; this module is
only the list. It imports no torch.
"""

from learnkit.zoo import register
from learnkit.zoo.simple_cnn import simple_cnn, split_simple_cnn
from learnkit.zoo.torchvision_archs import features_split, split_resnet, torchvision_builder

register(
    "simple_cnn",
    simple_cnn,
    split=split_simple_cnn,
    cut=-1,  # drop the head: the conv body serves as a U-Net encoder
    meta={"description": "tiny conv net: 4 conv-bn-relu stride-2 blocks, pool, linear", "min_size": 16},
)

_RESNETS = {
    "resnet18": ("ResNet-18 (torchvision): basic blocks [2, 2, 2, 2]", 11_689_512),
    "resnet34": ("ResNet-34 (torchvision): basic blocks [3, 4, 6, 3]", 21_797_672),
    "resnet50": ("ResNet-50 (torchvision): bottleneck blocks [3, 4, 6, 3]", 25_557_032),
}
for _name, (_description, _params) in _RESNETS.items():
    register(
        _name,
        torchvision_builder(_name),
        split=split_resnet,
        cut=-2,  # drop avgpool and fc
        meta={"description": _description, "min_size": 32, "params": _params},
    )

register(
    "mobilenet_v3_small",
    torchvision_builder("mobilenet_v3_small"),
    split=features_split(4),
    cut=-2,  # keep features; drop avgpool and classifier
    meta={
        "description": "MobileNetV3-Small (torchvision): light, for CPUs",
        "min_size": 32,
        "params": 2_542_856,
    },
)

register(
    "efficientnet_b0",
    torchvision_builder("efficientnet_b0"),
    split=features_split(4),
    cut=-2,  # keep features; drop avgpool and classifier
    meta={"description": "EfficientNet-B0 (torchvision): MBConv blocks", "min_size": 32, "params": 5_288_548},
)
