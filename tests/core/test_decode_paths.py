"""``read_image``/``load_image``: torchvision decodes plain 8-bit JPEG/PNG, Pillow the rest; the
pixels are Pillow's (``open_image``) either way, and the bad-image rule holds (a truncated file is
refused, never handed to torchvision's decoder, which would only warn)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.data import images
from learnkit.data.images import image_to_tensor, load_image, open_image, read_image
from learnkit.errors import DataError


def photo(w=61, h=37, seed=0) -> Image.Image:
    """Smooth gradients and noise, so a JPEG of it is a realistic one (and not symmetric)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 4 % 256, yy * 6 % 256, (xx + 2 * yy) % 256], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8))


@pytest.fixture
def fast_calls(monkeypatch):
    """The formats handed to torchvision's decoder."""
    calls: list[str] = []
    original = images._decode_plain

    def spy(data, fmt):
        calls.append(fmt)
        return original(data, fmt)

    monkeypatch.setattr(images, "_decode_plain", spy)
    return calls


def pil_pixels(path) -> torch.Tensor:
    return image_to_tensor(open_image(path))


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "L")])
def test_plain_files_go_to_torchvision_with_pillows_pixels(tmp_path, fast_calls, fmt, mode):
    path = tmp_path / f"a.{fmt.lower()}"
    photo().convert(mode).save(path, format=fmt)
    x = read_image(path)
    assert fast_calls == [fmt]
    assert x.dtype == torch.uint8 and x.shape == (3, 37, 61)
    assert torch.equal(x, pil_pixels(path))  # the same libjpeg-turbo / zlib pixels
    old = image_to_tensor(open_image(path).resize((24, 24), Image.Resampling.BILINEAR))
    assert int((load_image(path, 24).int() - old.int()).abs().max()) <= 1  # resize: within 1/255


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_as_pillow_applies_it(tmp_path, fast_calls, orientation):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = orientation
    photo().save(path, quality=92, exif=exif)
    x = read_image(path)
    assert fast_calls == ["JPEG"]
    assert x.shape == ((3, 61, 37) if orientation >= 5 else (3, 37, 61))
    assert torch.equal(x, pil_pixels(path))


@pytest.mark.parametrize(
    "make",
    [
        lambda p: Image.fromarray(np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)).save(p, "PNG"),
        lambda p: photo().convert("P").save(p, "PNG"),
        lambda p: photo().convert("LA").save(p, "PNG"),
        lambda p: photo().convert("RGBA").save(p, "PNG"),
        lambda p: photo().convert("CMYK").save(p, "JPEG"),
        lambda p: photo().save(p, "WEBP"),
    ],
    ids=["png16", "palette", "LA", "RGBA", "cmyk-jpeg", "webp"],
)
def test_other_modes_go_through_pillow(tmp_path, fast_calls, make):
    path = tmp_path / "img"
    make(path)
    x = read_image(path)
    assert fast_calls == []
    assert torch.equal(x, pil_pixels(path))


def test_sixteen_bit_png_is_scaled_as_before(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(path)
    assert int(read_image(path).min()) == 255


def test_png_with_a_transparent_colour_goes_through_pillow(tmp_path, fast_calls):
    path = tmp_path / "key.png"
    photo().save(path, transparency=(0, 0, 0))
    assert torch.equal(read_image(path), pil_pixels(path)) and fast_calls == []


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    photo(96, 80).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("tail", [b"", b"\0" * 16], ids=["cut", "cut-then-padded"])
def test_truncated_jpeg_is_refused_without_reaching_torchvision(tmp_path, fast_calls, tail):
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes()[: len(jpeg_bytes()) * 2 // 3] + tail)
    with pytest.raises(DataError, match="truncated"):
        load_image(path, 16)
    assert fast_calls == []


def test_padding_after_the_end_marker_keeps_the_fast_path(tmp_path, fast_calls):
    path = tmp_path / "padded.jpg"
    path.write_bytes(jpeg_bytes() + b"\0" * 32)
    assert torch.equal(read_image(path), pil_pixels(path)) and fast_calls == ["JPEG"]


def test_bytes_after_the_end_marker_go_through_pillow(tmp_path, fast_calls):
    path = tmp_path / "trailer.jpg"
    path.write_bytes(jpeg_bytes() + b"camera trailer")
    assert torch.equal(read_image(path), pil_pixels(path)) and fast_calls == []


def test_truncated_png_is_refused(tmp_path, fast_calls):
    buf = io.BytesIO()
    photo(64, 64).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[:-40])
    with pytest.raises(DataError, match="truncated"):
        load_image(path, 16)
    assert fast_calls == []
