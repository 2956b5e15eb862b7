"""Reading images: any mode to RGB, format by content, hostile files refused with one clear line."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.data import DataBunch, ImageDataset, load_image, load_mask, open_image, preprocess
from learnkit.data.images import MAX_PIXELS, check_image
from learnkit.errors import DataError


def noisy(size=(20, 12), mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height pixels, with a tiny (broken) body: a bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


def assert_refused(path: Path, *words: str) -> None:
    with pytest.raises(DataError) as info:
        open_image(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I;16", "I", "F"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    path = tmp_path / "img.tiff"
    noisy(mode=mode).save(path)
    img = open_image(path)
    assert img.mode == "RGB" and img.size == (20, 12)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(path)
    assert np.asarray(open_image(path)).min() == 255
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(path)
    assert 126 <= np.asarray(open_image(path)).max() <= 129


def test_format_comes_from_content_not_extension(tmp_path):
    path = tmp_path / "really_a_png.jpg"
    noisy().save(path, format="PNG")
    assert np.array_equal(np.asarray(open_image(path)), np.asarray(noisy()))


def test_zero_byte_file_is_refused(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_refused(path, "empty")


def test_not_an_image_is_refused(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello, I am text")
    assert_refused(path, "not an image")


def test_missing_file_is_refused(tmp_path):
    assert_refused(tmp_path / "nope.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image_is_refused(tmp_path, fmt):
    buf = io.BytesIO()
    noisy((64, 64)).save(buf, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert_refused(path, "truncated")


@pytest.mark.parametrize("side", [8000, 20000])  # over our cap; and over Pillow's own bomb limit
def test_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    assert side * side > MAX_PIXELS
    path = png_header_only(tmp_path / "bomb.png", side, side)
    assert_refused(path, "too large")
    with pytest.raises(DataError):
        check_image(path)


def test_check_image_catches_a_truncated_png(tmp_path):
    buf = io.BytesIO()
    noisy((64, 64)).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[:-40])
    with pytest.raises(DataError):
        check_image(path)


def test_load_image_is_uint8_chw_at_size(tmp_path):
    path = tmp_path / "a.png"
    noisy((30, 10)).save(path)
    x = load_image(path, 16)
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8


def test_masks_resize_with_nearest_and_check_codes(tmp_path):
    path = tmp_path / "m.png"
    arr = np.zeros((10, 10), dtype=np.uint8)
    arr[:, 5:] = 2
    Image.fromarray(arr).save(path)
    mask = load_mask(path, 25, n_codes=3)
    assert mask.shape == (25, 25) and set(mask.unique().tolist()) == {0, 2}
    with pytest.raises(DataError, match="class index 2"):
        load_mask(path, 25, n_codes=2)
    colour = tmp_path / "colour.png"
    noisy().save(colour)
    with pytest.raises(DataError, match="colours"):
        load_mask(colour, 8)


def test_preprocess_equals_the_validation_pipeline(tmp_path):
    paths = []
    for i, mode in enumerate(["RGB", "RGBA", "L"]):
        paths.append(tmp_path / f"{i}.png")
        noisy((40, 24), mode, seed=i).save(paths[-1])
    stats = {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]}
    data = DataBunch.for_inference(["a"], 32, stats, device="cpu")
    data.add_test(paths, bs=2)
    from_loader = torch.cat([x for x, _ in data.test_dl])
    one_by_one = torch.cat([preprocess([open_image(p)], 32, stats, "cpu") for p in paths])
    assert from_loader.shape == (3, 3, 32, 32)
    assert torch.equal(from_loader, one_by_one)
    # a PIL image the user opened in another mode still gets the same treatment
    assert torch.equal(preprocess([Image.open(paths[1])], 32, stats)[0], from_loader[1])
    assert torch.equal(data.preprocess([open_image(paths[2])])[0], from_loader[2])


def test_dataset_without_labels_marks_targets(tmp_path):
    path = tmp_path / "a.png"
    noisy().save(path)
    x, y = ImageDataset([path], size=8)[0]
    assert x.shape == (3, 8, 8) and int(y) == -1
