"""The torch side of the timm plugin: the body a new head goes on (imported on first use)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TimmBody(nn.Module):
    """A timm model without its classifier, returning feature maps (``N x C x H x W``).

    ``TimmBody(model)`` drops ``model``'s classifier (``reset_classifier(0)``) and runs its
    ``forward_features``; channels-last outputs are permuted, and token outputs (ViTs) are pooled
    as timm's own head pools them, then given as a 1 x 1 map.
    """

    def __init__(self, model: Any):
        super().__init__()
        model.reset_classifier(0)
        self.model = model
        self.channels_last = str(getattr(model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(x)
        if feats.ndim == 4:
            return feats.permute(0, 3, 1, 2) if self.channels_last else feats
        return self.model.forward_head(feats, pre_logits=True)[:, :, None, None]
