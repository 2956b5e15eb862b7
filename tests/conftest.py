"""Shared fixtures: tiny data and models, so every test runs in well under a second or two."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _sample_cache(tmp_path_factory, monkeypatch):
    """Built-in samples are generated once per test session into a private cache."""
    cache = tmp_path_factory.getbasetemp() / "learnkit-cache"
    monkeypatch.setenv("LEARNKIT_CACHE", str(cache))
