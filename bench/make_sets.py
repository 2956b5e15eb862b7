"""Two small real image sets for the fastai comparison, from data that packages ship (no downloads).

- ``digits``: scikit-learn's ``load_digits`` (1797 handwritten digits, 8x8 greys, 10 classes),
  scaled up 4x (nearest) to 32x32 PNGs; a seeded 80/20 split per class.
- ``textures``: scikit-image's shipped photographs ``brick``, ``grass``, ``gravel`` (512x512
  greys, 3 classes), cut into 32x32 patches; the top 3/4 of each photograph gives the training
  patches and the bottom 1/4 the validation ones, so no pixel is in both.

Both are written as ``DIR/<set>/train/<class>/*.png`` and ``DIR/<set>/valid/<class>/*.png``, which
learnkit and fastai read alike. Run with an interpreter that has scikit-learn and scikit-image
(the fastai venv of bench/README.md)::

    /work/fastai-venv/bin/python bench/make_sets.py /tmp/sets
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).convert("RGB").save(path)


def make_digits(root: Path, seed: int = 0) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    for c in range(10):
        idx = np.flatnonzero(digits.target == c)
        rng.shuffle(idx)
        n_valid = len(idx) // 5
        for k, i in enumerate(idx):
            img = (digits.images[i] * (255.0 / 16.0)).repeat(4, 0).repeat(4, 1)
            split = "valid" if k < n_valid else "train"
            _save(img, root / "digits" / split / str(c) / f"{i:04d}.png")


def make_textures(root: Path, patch: int = 32) -> None:
    from skimage import data

    for name in ("brick", "grass", "gravel"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        cut = (h * 3 // 4) // patch * patch
        for y in range(0, h - patch + 1, patch):
            for x in range(0, w - patch + 1, patch):
                split = "train" if y + patch <= cut else "valid"
                _save(
                    img[y : y + patch, x : x + patch],
                    root / "textures" / split / name / f"{y:03d}_{x:03d}.png",
                )


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/learnkit-bench-sets")
    make_digits(out)
    make_textures(out)
    for s in ("digits", "textures"):
        n = {split: len(list((out / s / split).rglob("*.png"))) for split in ("train", "valid")}
        print(s, n)
