"""Tiny tensors-in-memory data and models for the core tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch


def tiny_data(
    n: int = 64, n_in: int = 4, n_classes: int = 2, bs: int = 16, shuffle: bool = True, seed: int = 0
):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_in, generator=g)
    y = (x[:, 0] > 0).long() if n_classes == 2 else torch.randint(0, n_classes, (n,), generator=g)
    train = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=shuffle)
    valid = DataLoader(TensorDataset(x[: n // 2], y[: n // 2]), batch_size=bs * 2)
    return DataBunch(train, valid, classes=[str(i) for i in range(n_classes)])


def tiny_model(n_in: int = 4, n_out: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, n_out))
