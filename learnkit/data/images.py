"""Reading images safely, and the one pipeline that turns them into tensors.

Rules for files (each refusal is a ``DataError`` naming the path, one line):

- the format is found from the content, never the extension (a PNG named ``.jpg`` is fine), and
  only these decoders are ever used: ``DECODERS`` (PNG, JPEG, WebP, GIF, BMP, TIFF); anything else
  (an EPS named ``.png`` that would reach Ghostscript) is "not an image";
- a missing or zero-byte file, something that is not an image, and a truncated image are refused;
- an image over ``MAX_PIXELS`` pixels, or whose decoding would take over ``MAX_DECODED_BYTES``
  (a decompression bomb) is refused from its header, before a single pixel is decoded;
- any mode (palette, greyscale, 16-bit, CMYK, with alpha) becomes 8-bit RGB; the first frame of an
  animation is used; EXIF orientation is applied.

Every image goes through the same steps whether it comes from a folder (``load_image``) or from
memory (``preprocess``): RGB, uint8 ``C x H x W``, resized to ``size x size`` (``resize_tensor``:
bilinear, antialiased, aspect ratio not kept so that nothing is cropped away), then ``Normalize``
on the device. So a prediction for one image equals the prediction for it inside a data set. Files
are decoded by torchvision when they are plain 8-bit JPEG/PNG (same pixels, faster), else by
Pillow (``read_image``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from learnkit.data.augment import Normalize
from learnkit.errors import DataError

MAX_PIXELS = 50_000_000
"""Images with more pixels than this are refused (decompression-bomb guard)."""

MAX_DECODED_BYTES = 300 * 2**20
"""Images whose decoding (pixels in their own mode, plus the RGB copy) takes more memory than this
are refused from their header (a 50-megapixel RGB image takes 286 MiB; a 4-byte mode image over
about 45 megapixels is refused)."""

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File extensions taken as images when a folder is listed (case-insensitive)."""

DECODERS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""The only Pillow decoders learnkit opens files with (a camera's multi-picture JPEG comes through JPEG)."""

# What Pillow raises on a broken file, besides its own UnidentifiedImageError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def is_image_file(path: Path) -> bool:
    """True for a visible file whose extension is one of ``IMAGE_EXTENSIONS``."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _open_checked(path: str | Path) -> Image.Image:
    """Open lazily (header only) after the size checks; the caller decodes."""
    path = Path(path)
    try:
        n_bytes = path.stat().st_size
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {_first_line(exc)}") from None
    if n_bytes == 0:
        raise DataError(f"image file is empty (0 bytes): {path}")
    try:
        with warnings.catch_warnings():
            # our own pixel cap below refuses these with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path, formats=DECODERS)
    except UnidentifiedImageError:
        raise DataError(f"not an image (unrecognised content): {path}") from None
    except Image.DecompressionBombError:
        raise DataError(
            f"image too large (over Pillow's pixel limit; possible decompression bomb): {path}"
        ) from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"cannot read image {path}: {_first_line(exc)}") from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise DataError(
            f"image too large ({width}x{height} pixels, limit {MAX_PIXELS:,}; "
            f"possible decompression bomb): {path}"
        )
    need = decoded_bytes(img)
    if need > MAX_DECODED_BYTES:
        img.close()
        raise DataError(
            f"image too large to decode ({width}x{height} {img.mode}: {need / 2**20:.0f} MiB with its "
            f"RGB copy, budget {MAX_DECODED_BYTES / 2**20:.0f} MiB; possible decompression bomb): {path}"
        )
    return img


def decoded_bytes(img: Image.Image) -> int:
    """The memory decoding ``img`` takes: its pixels in their own mode, plus the 8-bit RGB copy."""
    per_pixel = len(img.getbands()) * _band_bytes(img.mode)
    return img.size[0] * img.size[1] * (per_pixel + 3)


def _band_bytes(mode: str) -> int:
    if mode in ("I", "F") or mode.startswith("I;32") or mode.startswith("F;32"):
        return 4
    if mode.startswith("I;16") or mode.startswith("F;16"):
        return 2
    return 1


def check_image(path: str | Path, size: int | None = None) -> None:
    """Validity check at scan time, much cheaper than a full decode: header, pixel cap, then

    - JPEG: decoded at reduced scale (Pillow's ``draft``, the DCT scaling down to ``size``), which
      reads the whole stream, so a truncated JPEG is found here rather than mid-training;
    - PNG: the file's own checksums (``verify``);
    - the other formats: a full decode (they are rare, and ``verify`` misses truncation there).

    So a data set read without the RAM cache skips the same files as one read with it.
    """
    img = _open_checked(path)
    try:
        if img.format == "PNG":
            img.verify()
        else:
            if img.format in ("JPEG", "MPO") and size is not None:
                img.draft("RGB", (size, size))
            img.load()
    except _DECODE_ERRORS as exc:
        raise DataError(f"corrupt or truncated image {path}: {_first_line(exc)}") from None
    finally:
        img.close()


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB (16-bit and float greyscale are scaled to 0..255, not clipped)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if img.mode == "F" and arr.max(initial=0) <= 1.0 else 255.0
        if img.mode != "F" and arr.max(initial=0) > 255:
            top = 65535.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def open_image(path: str | Path) -> Image.Image:
    """Decode the image at ``path`` as an RGB PIL image, or raise ``DataError`` (see module rules).

    Example:
        >>> img = open_image("photo.jpg")  # doctest: +SKIP
        >>> img.mode
        'RGB'
    """
    img = _open_checked(path)
    try:
        with img:
            img.load()
            try:
                ImageOps.exif_transpose(img, in_place=True)
            except _DECODE_ERRORS:  # a broken EXIF block should not cost the picture
                pass
            return to_rgb(img)
    except _DECODE_ERRORS as exc:
        raise DataError(f"corrupt or truncated image {path}: {_first_line(exc)}") from None


def resize_tensor(x: torch.Tensor, size: int) -> torch.Tensor:
    """A uint8 ``3 x H x W`` image squeezed to ``3 x size x size``: bilinear, antialiased when
    shrinking (Pillow's filter, as ``torchvision.transforms.v2.functional.resize`` runs it on uint8)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    out = torch.nn.functional.interpolate(
        x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return out[0].contiguous()


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image as a uint8 ``3 x H x W`` tensor."""
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def read_image(path: str | Path) -> torch.Tensor:
    """The image at ``path`` as a uint8 RGB ``3 x H x W`` tensor at its own size, EXIF orientation
    applied (``DataError`` if unusable, by the module's rules).

    The header is read and checked by Pillow (format by content, pixel and memory caps). A plain
    8-bit JPEG or PNG (RGB or greyscale, complete: the JPEG ends with its end-of-image marker, the
    PNG with its IEND chunk) is decoded by torchvision (``decode_jpeg``/``decode_png``: the same
    libjpeg-turbo pixels as Pillow's, faster); anything else (palette, alpha, 16-bit, CMYK, another
    format, an incomplete or odd file) goes through Pillow as :func:`open_image`, which keeps the
    bad-image rule (a truncated file is refused there, never decoded in part).
    """
    img = _open_checked(path)
    with img:
        data = _plain_bytes(img)
        fmt, dims = img.format, sorted(img.size)
    if data is not None:
        x = _decode_plain(data, fmt)
        if x is not None and sorted(x.shape[1:]) == dims:
            return x
    return image_to_tensor(open_image(path))


_PNG_END = b"IEND\xaeB`\x82"


def _plain_bytes(img: Image.Image) -> bytearray | None:
    """The file's bytes when torchvision can decode it exactly as Pillow would, else None."""
    if img.mode not in ("RGB", "L") or img.format not in ("JPEG", "PNG") or img.fp is None:
        return None
    if img.format == "PNG" and "transparency" in img.info:
        return None
    try:
        img.fp.seek(0)
        data = bytearray(img.fp.read())
    except OSError:
        return None
    if img.format == "JPEG":
        # libjpeg only warns on a truncated stream (and pads it with grey): a complete JPEG ends
        # with EOI (FFD9), which cannot occur inside the entropy-coded data
        return data if data.rstrip(b"\0").endswith(b"\xff\xd9") else None
    if data[24] != 8 or data[25] not in (0, 2):  # IHDR: bit depth 8, greyscale or RGB
        return None
    if b"eXIf" in data or b"Raw profile type exif" in data:  # orientation: Pillow's reading
        return None
    return data if data.endswith(_PNG_END) else None


def _decode_plain(data: bytearray, fmt: str) -> torch.Tensor | None:
    """torchvision's decode of a plain JPEG/PNG (uint8 ``3 x H x W``), None if it refuses it (or
    torchvision has no image decoders)."""
    ops = _torchvision_decoders()
    if ops is None:
        return None
    decode_jpeg, decode_png, rgb = ops
    buf = torch.frombuffer(data, dtype=torch.uint8)
    try:
        x = decode_jpeg(buf, rgb, True) if fmt == "JPEG" else decode_png(buf, rgb, False)  # EXIF: JPEG
    except (RuntimeError, ValueError):
        return None
    return x if x.dtype == torch.uint8 and x.dim() == 3 and x.shape[0] == 3 else None


@functools.cache
def _torchvision_decoders() -> tuple | None:
    """torchvision's registered decoding ops ``(decode_jpeg, decode_png, RGB mode)``, or None.

    The ops themselves, not ``torchvision.io.decode_jpeg``: since torchvision 0.29 those wrappers
    warn (``DeprecationWarning``, TorchCodec supersedes them) on every call, i.e. on every image;
    the ops they call are the same. Where a torchvision has none, Pillow decodes everything.
    """
    try:
        from torchvision.io import ImageReadMode, image  # noqa: F401  (loads torchvision's image library)

        return torch.ops.image.decode_jpeg, torch.ops.image.decode_png, ImageReadMode.RGB.value
    except (ImportError, AttributeError, RuntimeError):
        return None


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """The image at ``path`` as a uint8 ``3 x size x size`` tensor (``DataError`` if unusable):
    :func:`read_image` then :func:`resize_tensor`."""
    return resize_tensor(read_image(path), size)


def load_mask(path: str | Path, size: int, n_codes: int | None = None) -> torch.Tensor:
    """A mask PNG whose pixel values are class indices, as a uint8 ``size x size`` tensor (nearest).

    Palette and greyscale masks are read as indices (never colour-converted); an RGB mask is
    accepted only when its three channels are equal. Values ``>= n_codes`` are refused.
    """
    img = _open_checked(path)
    try:
        with img:
            img.load()
            arr = np.asarray(img)
    except _DECODE_ERRORS as exc:
        raise DataError(f"corrupt or truncated mask {path}: {_first_line(exc)}") from None
    if arr.ndim == 3:
        if not (arr[..., :3] == arr[..., :1]).all():
            raise DataError(f"mask has colours, expected class indices (one value per pixel): {path}")
        arr = arr[..., 0]
    if arr.size and (arr.max() > 255 or arr.min() < 0):
        raise DataError(f"mask values must be class indices 0..255: {path}")
    arr = arr.astype(np.uint8)
    if n_codes is not None and arr.size and int(arr.max()) >= n_codes:
        raise DataError(f"mask has class index {int(arr.max())} but there are {n_codes} classes: {path}")
    mask = Image.fromarray(arr)  # 2-D uint8 -> mode "L"
    if mask.size != (size, size):
        mask = mask.resize((size, size), Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(mask, dtype=np.uint8).copy())


def preprocess(
    images: Sequence[Image.Image],
    size: int,
    norm_stats: dict | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """PIL images to the float batch a model sees at validation time (``N x 3 x size x size``).

    The same steps as a validation loader, so ``predict`` on one image equals ``get_preds`` over a
    data set holding it.

    Example:
        >>> x = preprocess([open_image("cat.png")], 64, IMAGENET_STATS)  # doctest: +SKIP
        >>> x.shape
        torch.Size([1, 3, 64, 64])
    """
    if not images:
        raise ValueError("preprocess needs at least one image")
    batch = torch.stack([resize_tensor(image_to_tensor(to_rgb(img)), size) for img in images])
    x, _ = Normalize.from_stats(norm_stats)(batch.to(device), None)
    return x
