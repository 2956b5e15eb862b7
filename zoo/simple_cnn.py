"""``simple_cnn``: a tiny conv net (conv-bn-relu stride-2 blocks, pool, linear), fast on a CPU.

torch is imported inside the functions, so listing the zoo stays torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def simple_cnn(n_out: int, channels: Sequence[int] = (16, 32, 64, 128), in_channels: int = 3) -> Any:
    """A ``body`` of conv(3x3, stride 2)-BN-ReLU blocks and a ``head`` (average pool, linear).

    Args:
        n_out: number of outputs.
        channels: output channels of each block; each block halves the input's side.
        in_channels: channels of the input images.
    """
    from collections import OrderedDict

    from torch import nn

    blocks, n_in = [], in_channels
    for n_ch in channels:
        blocks += [
            nn.Conv2d(n_in, n_ch, kernel_size=3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(n_ch),
            nn.ReLU(inplace=True),
        ]
        n_in = n_ch
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n_in, n_out))
    return nn.Sequential(OrderedDict(body=nn.Sequential(*blocks), head=head))


def split_simple_cnn(model: Any) -> list[Any]:
    """Two groups: the conv body, then the head."""
    return [model.body, model.head]
