"""Data for learnkit: loaders on the device, image folders, batch transforms, built-in samples.

Names are exported lazily (PEP 562), so that ``learnkit.data.samples`` (used by commands that
only write or locate data) imports no torch.

Example:
    >>> from learnkit.data import ImageDataBunch, resolve_data
    >>> data = ImageDataBunch.from_folder(resolve_data("sample:shapes"), size=64)  # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module

# public name -> module that defines it
_EXPORTS = {
    "DatasetType": "learnkit.data.bunch",
    "DataBunch": "learnkit.data.bunch",
    "default_device": "learnkit.data.bunch",
    "DeviceDataLoader": "learnkit.data.loader",
    "EpochSampler": "learnkit.data.sampler",
    "mix_seed": "learnkit.data.sampler",
    "Normalize": "learnkit.data.augment",
    "Augment": "learnkit.data.augment",
    "AugmentConfig": "learnkit.data.augment",
    "AugmentSettings": "learnkit.data.augment",
    "PRESETS": "learnkit.data.augment",
    "IMAGENET_STATS": "learnkit.data.augment",
    "open_image": "learnkit.data.images",
    "load_image": "learnkit.data.images",
    "load_mask": "learnkit.data.images",
    "preprocess": "learnkit.data.images",
    "MAX_PIXELS": "learnkit.data.images",
    "IMAGE_EXTENSIONS": "learnkit.data.images",
    "ImageDataset": "learnkit.data.dataset",
    "SkippedImagesWarning": "learnkit.data.dataset",
    "ImageDataBunch": "learnkit.data.folder",
    "SegmentationDataBunch": "learnkit.data.segmentation",
    "resolve_data": "learnkit.data.samples",
    "write_sample": "learnkit.data.samples",
    "SAMPLES": "learnkit.data.samples",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'learnkit.data' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
