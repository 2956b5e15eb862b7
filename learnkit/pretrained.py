"""Pretrained weights by name: ``--pretrained imagenet`` finds torchvision's published weights.

The weights enum of the arch (``torchvision.models.get_model_weights``) names the file its
``url`` ends with; torch's hub cache holds such files in ``$TORCH_HOME/hub/checkpoints`` (the
folder ``torch.hub.get_dir()`` reports). learnkit never downloads: when the file is not there,
a :class:`~learnkit.errors.DataError` (exit 3) names the file and the folder to put it in, at
once. Those weights expect ImageNet's normalisation, which the data then uses and the checkpoint
records.

Example:
    >>> resolve_pretrained("imagenet", "resnet18")  # doctest: +SKIP
    PosixPath('/home/me/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth')
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from learnkit.errors import DataError, UsageError

NAMED = ("imagenet",)


def imagenet_weights(arch: str):
    """The default ImageNet weights enum member of torchvision's ``arch`` (a UsageError if none)."""
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(arch)
    except (ValueError, KeyError):
        raise UsageError(f"arch '{arch}' has no published ImageNet weights in torchvision") from None
    return weights.DEFAULT


def hub_checkpoint_dir() -> Path:
    """torch's hub cache of weight files: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_file(arch: str) -> Path:
    """The cached file of ``arch``'s ImageNet weights; a DataError naming it when it is missing."""
    weights = imagenet_weights(arch)
    filename = os.path.basename(urlparse(weights.url).path)
    folder = hub_checkpoint_dir()
    path = folder / filename
    if not path.is_file():
        raise DataError(
            f"ImageNet weights for {arch} are not in torch's cache: place {filename} in {folder} "
            f"(from {weights.url}); learnkit does not download"
        )
    return path


def resolve_pretrained(pretrained: str | Path | None, arch: str) -> Path | None:
    """A weights file for ``--pretrained``: a name (``imagenet``) looked up in the cache, or a path.

    An arch whose registry entry has its own weights lookup (``meta["weights"]``, such as the
    timm plugin's, which reads the Hugging Face cache) resolves the name through it, as
    :func:`learnkit.registry.pretrained_file` does, tags included; the others use torchvision's.
    """
    if pretrained is None:
        return None
    entry = _entry_with_weights(arch)
    if entry is not None:
        from learnkit import registry

        word = str(pretrained)
        return registry.pretrained_file(entry, word.lower() if word.lower() in NAMED else pretrained)
    if str(pretrained).lower() in NAMED:
        return imagenet_weights_file(arch)
    return Path(pretrained)


def _entry_with_weights(arch: str):
    """The registry entry of ``arch`` when it resolves weight names itself, else None."""
    from learnkit import registry

    try:
        entry = registry.get(arch)
    except UsageError:  # not in the zoo: the caller's own checks name it
        return None
    return entry if callable(entry.meta.get("weights")) else None
