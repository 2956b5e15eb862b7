"""Builders and layer-group splits for torchvision's classification models, never with weights.

``weights=None`` always: nothing is downloaded. A local state dict comes in through
``--pretrained FILE`` instead. torch is imported inside the functions, so listing the zoo stays
torch-free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def torchvision_builder(fn_name: str) -> Callable[..., Any]:
    """A zoo builder ``builder(n_out, **kwargs)`` for ``torchvision.models.<fn_name>``."""

    def build(n_out: int, **kwargs: Any) -> Any:
        from torchvision import models

        return getattr(models, fn_name)(weights=None, num_classes=n_out, **kwargs)

    build.__name__ = build.__qualname__ = fn_name
    build.__doc__ = f"torchvision's {fn_name} with ``n_out`` classes and no pretrained weights."
    return build


def split_resnet(model: Any) -> list[Any]:
    """fastai v1's ResNet split: stem to layer2, layer3 and layer4, then the head."""
    stem = [model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2]
    return [stem, [model.layer3, model.layer4], [model.avgpool, model.fc]]


def features_split(at: int) -> Callable[[Any], list[Any]]:
    """A split for models built as ``features``, ``avgpool``, ``classifier`` (MobileNet, EfficientNet).

    ``features[:at]`` and ``features[at:]`` are the body groups; pick ``at`` where the stride-16
    stage starts, as ResNet's split does at layer3.
    """

    def split(model: Any) -> list[Any]:
        blocks = list(model.features.children())
        return [blocks[:at], blocks[at:], [model.avgpool, model.classifier]]

    return split
