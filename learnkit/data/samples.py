"""Built-in sample data sets, drawn on first use, so every command works with no data at hand.

``sample:shapes`` (classification): ``train/<class>/*.png`` (100 a class) and
``valid/<class>/*.png`` (30 a class), one circle, square, triangle or cross per 64x64 image, of
random size, position, rotation and colour, over a dark noisy background with faint distractor
strokes. Each class has a typical hue with a wide scatter (see ``_shape_colour``), calibrated so
that a 3-layer CNN trained with Adam(1e-3), batch 64, reaches about 0.7 valid accuracy in 3
epochs (about 0.55 after one), while colour alone is not enough: a model that learns the shapes
gets further (``simple_cnn`` with 1cycle at 1e-2: about 0.83 in 5 epochs).

``sample:shapes-seg`` (segmentation): ``images/`` and ``masks/`` (200 pairs, mask pixel = class
index), ``codes.txt`` (background, circle, square, triangle); two or three large shapes an image,
later ones on top, covering about a third of the pixels.

Both are drawn deterministically (fixed seeds, each image from its own generator) into
``$LEARNKIT_CACHE/samples/<name>-v1`` (default ``~/.cache/learnkit``). Writing is atomic: a data set
is drawn into a temporary folder beside its destination and renamed into place, so a process
sees either no data set or a whole one; when two processes draw at once, the first rename wins
and the other uses it. This module imports no torch.
"""

from __future__ import annotations

import colorsys
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from learnkit.errors import DataError

SAMPLES: tuple[str, ...] = ("shapes", "shapes-seg")
"""The names of the built-in samples (``sample:NAME``)."""

VERSION = 2  # bump when the drawing changes, so old caches are not mistaken for new ones
SIZE = 64
SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
SEG_CODES = ("background", "circle", "square", "triangle")
_N_TRAIN, _N_VALID = 100, 30  # images per class
_N_SEG = 200
_SEED = 20240601


def cache_root() -> Path:
    """Where samples are kept: ``$LEARNKIT_CACHE/samples`` or ``~/.cache/learnkit/samples``."""
    base = os.environ.get("LEARNKIT_CACHE") or Path.home() / ".cache" / "learnkit"
    return Path(base).expanduser() / "samples"


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([_SEED, *parts])


def _background(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark, tinted, noisy background with a faint gradient (float H x W x 3), and its mean colour."""
    base = rng.uniform(20, 100) + rng.normal(0, 15, 3)
    ramp = np.linspace(-1, 1, SIZE)
    ramp = ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None]
    img = base + rng.uniform(-20, 20, 3) * ramp + rng.normal(0, 15, (SIZE, SIZE, 3))
    return img, base


def _shape_colour(rng: np.random.Generator, code: int, n_codes: int) -> tuple[int, int, int]:
    """A bright colour whose hue scatters widely around the class's typical hue.

    Real classes have typical colours too; the scatter (35 degrees) makes neighbouring classes
    overlap, so colour alone takes a model only part of the way and shape does the rest.
    """
    hue = (code / n_codes + rng.normal(0, 35 / 360)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 1.0), rng.uniform(0.7, 1.0))
    return tuple(int(255 * c) for c in rgb)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """The outline of a square, triangle or cross of 'radius' ``r`` turned by ``angle`` radians."""
    if kind in ("square", "triangle"):
        n = 4 if kind == "square" else 3
        start = math.pi / 4 if kind == "square" else -math.pi / 2
        pts = [
            (r * math.cos(start + k * 2 * math.pi / n), r * math.sin(start + k * 2 * math.pi / n))
            for k in range(n)
        ]
    else:  # cross: a plus sign with arms of half-width w, traced clockwise from the top arm
        w = 0.32 * r
        arm = [(w, -r), (w, -w), (r, -w)]  # one quarter; the others are it turned by 90 degrees
        pts = [p for k in range(4) for p in (_turn(x, y, k) for x, y in arm)]
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in pts]


def _turn(x: float, y: float, quarters: int) -> tuple[float, float]:
    for _ in range(quarters):
        x, y = -y, x
    return x, y


def _draw_shape(
    draw: ImageDraw.ImageDraw, kind: str, xy: tuple[float, float], r: float, angle: float, fill
) -> None:
    cx, cy = xy
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)


def _finish(img: np.ndarray, rng: np.random.Generator) -> Image.Image:
    img = img + rng.normal(0, 10, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _shapes_image(code: int, rng: np.random.Generator) -> Image.Image:
    """One classification image: a single shape of class ``code`` and two faint distractor strokes."""
    bg, base = _background(rng)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(2):
        shade = tuple(int(v) for v in np.clip(base + rng.normal(0, 40, 3), 0, 255))
        draw.line(list(rng.uniform(0, SIZE, 4)), fill=shade, width=int(rng.integers(1, 3)))
    r = rng.uniform(14, 26)
    centre = tuple(rng.uniform(r + 1, SIZE - r - 1, 2))
    colour = _shape_colour(rng, code, len(SHAPE_CLASSES))
    _draw_shape(draw, SHAPE_CLASSES[code], centre, r, rng.uniform(0, 2 * math.pi), colour)
    return _finish(np.asarray(canvas, dtype=np.float64), rng)


def _write_png(img: Image.Image, path: Path) -> None:
    img.save(path, format="PNG", compress_level=1)


def _draw_shapes(dest: Path) -> None:
    for split_id, (split, n) in enumerate((("train", _N_TRAIN), ("valid", _N_VALID))):
        for cls_id, kind in enumerate(SHAPE_CLASSES):
            folder = dest / split / kind
            folder.mkdir(parents=True)
            for i in range(n):
                image = _shapes_image(cls_id, _rng(1, split_id, cls_id, i))
                _write_png(image, folder / f"{kind}_{i:04d}.png")


def _seg_pair(rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One segmentation image and its mask: two or three large shapes, later ones on top."""
    bg, base = _background(rng)
    canvas = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    mask = Image.new("L", (SIZE, SIZE), 0)
    draw, draw_mask = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(2, 4))):
        code = int(rng.integers(1, len(SEG_CODES)))
        r = rng.uniform(12, 22)
        centre = tuple(rng.uniform(r * 0.6, SIZE - r * 0.6, 2))
        angle = rng.uniform(0, 2 * math.pi)
        colour = _shape_colour(rng, code - 1, len(SEG_CODES) - 1)
        _draw_shape(draw, SEG_CODES[code], centre, r, angle, colour)
        _draw_shape(draw_mask, SEG_CODES[code], centre, r, angle, code)
    return _finish(np.asarray(canvas, dtype=np.float64), rng), mask


def _draw_shapes_seg(dest: Path) -> None:
    (dest / "images").mkdir(parents=True)
    (dest / "masks").mkdir()
    (dest / "codes.txt").write_text("\n".join(SEG_CODES) + "\n", encoding="utf-8")
    for i in range(_N_SEG):
        image, mask = _seg_pair(_rng(2, i))
        _write_png(image, dest / "images" / f"shapes_{i:04d}.png")
        _write_png(mask, dest / "masks" / f"shapes_{i:04d}.png")


_DRAWERS: dict[str, Callable[[Path], None]] = {"shapes": _draw_shapes, "shapes-seg": _draw_shapes_seg}


def _check_name(name: str) -> str:
    name = name.removeprefix("sample:")
    if name not in SAMPLES:
        raise DataError(f"unknown sample '{name}' (known: {', '.join(SAMPLES)})")
    return name


def _draw_atomically(name: str, dest: Path, replace_empty: bool) -> bool:
    """Draw ``name`` into a temporary folder beside ``dest`` and rename it to ``dest``.

    Returns False when ``dest`` appeared meanwhile (another process won); the draft is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    draft = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    draft.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary folder
    try:
        _DRAWERS[name](draft)
        try:
            if replace_empty:
                os.replace(draft, dest)  # POSIX replaces an empty folder atomically
            else:
                os.rename(draft, dest)
        except OSError:
            if dest.is_dir():
                return False
            raise
        return True
    finally:
        if draft.exists():
            shutil.rmtree(draft, ignore_errors=True)


def sample_path(name: str) -> Path:
    """The cached copy of sample ``name``, drawn now if it is not there yet."""
    name = _check_name(name)
    dest = cache_root() / f"{name}-v{VERSION}"
    if not dest.is_dir():
        try:
            _draw_atomically(name, dest, replace_empty=False)
        except OSError as exc:
            raise DataError(f"cannot write sample '{name}' to {dest}: {exc.strerror or exc}") from None
    return dest


def resolve_data(arg: str | Path) -> Path:
    """The data folder an argument names: ``"sample:NAME"`` (drawn on first use) or a path.

    Raises ``DataError`` for a path that does not exist or an unknown sample name.

    Example:
        >>> resolve_data("sample:shapes")  # doctest: +SKIP
        PosixPath('/home/me/.cache/learnkit/samples/shapes-v1')
    """
    text = str(arg)
    if text.startswith("sample:"):
        return sample_path(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {path}")
    return path


def write_sample(name: str, dest: str | Path) -> Path:
    """Write sample ``name`` (``"shapes"`` or ``"sample:shapes"``...) into folder ``dest``.

    ``dest`` must not exist or be empty; it is written atomically. Returns ``dest``.
    """
    name = _check_name(name)
    dest = Path(dest).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"destination exists and is not an empty folder: {dest}")
    try:
        if not _draw_atomically(name, dest, replace_empty=True):
            raise DataError(f"destination was filled by someone else while writing: {dest}")
    except OSError as exc:
        raise DataError(f"cannot write sample '{name}' to {dest}: {exc.strerror or exc}") from None
    return dest
