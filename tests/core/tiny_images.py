"""Tiny image folders (a few PNGs written with PIL) and a tiny per-pixel model, for the inference tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

CLASSES = ("blue", "green", "red")
SEG_CODES = ("background", "square")


def make_class_folder(root: Path, n_train: int = 5, n_valid: int = 3) -> Path:
    """``root/{train,valid}/<colour>/*.png``: noisy images of mixed sizes tinted by their class."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", n_valid)):
        for channel, name in enumerate(CLASSES[::-1]):  # red -> channel 0, green 1, blue 2
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                arr = rng.integers(0, 90, (14 + 3 * i, 18 - i, 3), dtype=np.uint8)
                arr[..., channel] += 140
                Image.fromarray(arr).save(folder / f"{name}{i}.png")
    return root


def make_seg_folder(root: Path, n: int = 6) -> Path:
    """``root/images``, ``root/masks`` (a bright square = class 1), ``root/codes.txt``."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    (root / "codes.txt").write_text("\n".join(SEG_CODES) + "\n")
    for i in range(n):
        img = rng.integers(0, 60, (20, 24, 3), dtype=np.uint8)
        mask = np.zeros((20, 24), dtype=np.uint8)
        top, left = rng.integers(0, 10), rng.integers(0, 12)
        img[top : top + 9, left : left + 10] += 180
        mask[top : top + 9, left : left + 10] = 1
        Image.fromarray(img).save(root / "images" / f"im{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    return root


def tiny_seg(n_out: int) -> nn.Module:
    """A fully convolutional net: same height and width out as in."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, n_out, 1))


def write_corrupt(path: Path) -> Path:
    """A file named like a PNG holding a truncated PNG header."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    return path
