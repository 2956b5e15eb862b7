"""Synthetic image folders for the GPU script, written fast (one process per core).

``make_folder(root, n, size)`` writes ``root/{train,valid}/<class>/*.jpg``: each class is a hue and
a stripe orientation, each image has its own phase, brightness and noise, so a network learns the
classes within an epoch or two and the loss has somewhere to fall. ``size`` may be a pair
``(width, height)`` (the data-bound benchmark decodes ImageNet-sized JPEGs).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

N_CLASSES = 10


def _image(cls: int, index: int, width: int, height: int):
    """The pixels of image ``index`` of class ``cls`` (uint8 HxWx3), from its own seed."""
    import numpy as np

    rng = np.random.default_rng(cls * 1_000_003 + index)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = math.pi * cls / N_CLASSES
    wave = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 0.25 + rng.uniform(0, 2 * math.pi))
    hue = np.array([math.cos(2 * math.pi * cls / N_CLASSES + k * 2.1) for k in range(3)], np.float32)
    base = 128 + 60 * hue * rng.uniform(0.6, 1.0)
    img = base[None, None, :] + 50 * wave[..., None] + rng.normal(0, 20, (height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _write(job: tuple[str, int, int, int, int, int]) -> None:
    from PIL import Image

    folder, cls, start, stop, width, height = job
    for i in range(start, stop):
        Image.fromarray(_image(cls, i, width, height)).save(f"{folder}/{i}.jpg", quality=90)


def make_folder(
    root: Path, n: int, size: int | tuple[int, int], valid_frac: float = 0.1, n_classes: int = N_CLASSES
) -> Path:
    """``n`` JPEGs (``valid_frac`` of them under ``valid/``) in ``n_classes`` class folders."""
    width, height = (size, size) if isinstance(size, int) else size
    per_class = max(2, n // n_classes)
    n_valid = max(1, round(per_class * valid_frac))
    jobs = []
    for split, lo, hi in (("train", 0, per_class - n_valid), ("valid", per_class - n_valid, per_class)):
        for cls in range(n_classes):
            folder = root / split / f"c{cls}"
            folder.mkdir(parents=True, exist_ok=True)
            step = 250
            jobs += [(str(folder), cls, a, min(a + step, hi), width, height) for a in range(lo, hi, step)]
    workers = max(1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    if workers == 1:
        for job in jobs:
            _write(job)
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write, jobs))
    return root


def count_images(root: Path) -> int:
    return sum(1 for _ in root.rglob("*.jpg"))
