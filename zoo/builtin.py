"""learnkit's built-in archs, registered when this module is imported.

learnkit's own pyproject names this module in the ``learnkit.zoo`` entry-point group, so the
built-ins load the way any third-party plugin does. The builders live beside it; this module is
only the list. It imports no torch.
"""

from learnkit.zoo import Kwarg, register
from learnkit.zoo.simple_cnn import simple_cnn, split_simple_cnn
from learnkit.zoo.torchvision_archs import torchvision_entries

register(
    "simple_cnn",
    simple_cnn,
    split=split_simple_cnn,
    # no cut: as a classifier it keeps its own head; as a U-Net encoder its conv body serves
    meta={
        "description": "tiny conv net: 4 conv-bn-relu stride-2 blocks, pool, linear",
        "min_size": 16,
        "encoder_cut": -1,
        "params": 226_680,  # with 1000 outputs, as zoo list counts (checked by tests/zoo)
        "groups": 2,
        # what a checkpoint may pass the builder (learnkit.spec_kwargs): the shape, nothing else
        "kwargs": {
            "channels": Kwarg("int", 1, 4096, lengths=(1, 16), scalar=False),
            "in_channels": Kwarg("int", 1, 64),
        },
    },
)

# descriptions and parameter counts (with 1000 outputs) of the archs learnkit documents in detail
_DOCUMENTED = {
    "resnet18": ("ResNet-18 (torchvision): basic blocks [2, 2, 2, 2]", 11_689_512),
    "resnet34": ("ResNet-34 (torchvision): basic blocks [3, 4, 6, 3]", 21_797_672),
    "resnet50": ("ResNet-50 (torchvision): bottleneck blocks [3, 4, 6, 3]", 25_557_032),
    "mobilenet_v3_small": ("MobileNetV3-Small (torchvision): light, for CPUs", 2_542_856),
    "efficientnet_b0": ("EfficientNet-B0 (torchvision): MBConv blocks", 5_288_548),
}
for _name, _kwargs in torchvision_entries().items():
    if _name in _DOCUMENTED:
        _description, _params = _DOCUMENTED[_name]
        _kwargs["meta"] = {**_kwargs["meta"], "description": _description, "params": _params}
    register(_name, _kwargs.pop("builder"), **_kwargs)
