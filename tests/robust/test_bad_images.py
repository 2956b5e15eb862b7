"""Broken and hostile images never crash a command: the data layer skips them with one warning,
``predict`` gives each its error row (exit 3), and a folder of nothing usable is a data error."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from learnkit.cli.app import app

runner = CliRunner(env={"CI": "1"})


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int = 40_000) -> bytes:
    """A few hundred bytes claiming a ``side`` x ``side`` image (1.6 gigapixels at 40 000)."""
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    rows = zlib.compress(b"\0" * 1024)
    chunks = _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def good_png(colour=(200, 40, 40), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, format=fmt)
    return buf.getvalue()


BAD = {
    "truncated.png": good_png()[:60],
    "zero.png": b"",
    "bomb.png": bomb_png(),
    "text.png": b"this is not an image\n",
    "truncated.jpg": good_png(fmt="JPEG")[:100],
}


@pytest.fixture
def dirty_folder(tiny_folder, tmp_path) -> Path:
    """The tiny folder plus every kind of bad file in train/ and valid/ (and files to ignore or accept)."""
    root = tmp_path / "dirty"
    shutil.copytree(tiny_folder, root)
    for split in ("train", "valid"):
        for name, content in BAD.items():
            (root / split / "reds" / name).write_bytes(content)
    (root / "train" / "reds" / "png-named.jpg").write_bytes(good_png())  # by content: accepted
    (root / "train" / "reds" / "notes.txt").write_bytes(good_png())  # not an image extension: ignored
    return root


def test_training_skips_bad_images_with_one_warning(dirty_folder, tmp_path):
    args = ["fit", str(dirty_folder), "--arch", "simple_cnn", "--size", "16", "--bs", "8", "--device", "cpu",
            "--path", str(tmp_path / "run"), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr  # one per data set (train, valid)
    assert f"skipped {len(BAD)} of {24 * 2 + len(BAD) + 1} images" in warnings[0]
    assert json.loads(result.stdout)["epochs"] == 1


def test_predict_gives_each_bad_file_an_error_row_and_exits_3(dirty_folder, tmp_path):
    run = tmp_path / "run"
    fit = ["fit", str(dirty_folder), "--arch", "simple_cnn", "--size", "16", "--device", "cpu",
           "--path", str(run)]  # fmt: skip
    assert runner.invoke(app, fit).exit_code == 0
    folder = dirty_folder / "train" / "reds"
    files = [str(folder / name) for name in BAD] + [str(folder / "0.png"), str(folder / "png-named.jpg")]
    result = runner.invoke(app, ["predict", *files, "--model", "last", "--path", str(run), "--json"])
    assert result.exit_code == 3, result.stderr
    assert "Traceback" not in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [bool(r.get("error")) for r in rows] == [True] * len(BAD) + [False, False]
    assert any("pixels" in r["error"] or "bomb" in r["error"] for r in rows[: len(BAD)])


def test_a_folder_of_only_bad_images_is_a_data_error(tmp_path):
    for split in ("train", "valid"):
        for colour in ("reds", "blues"):  # two classes: the refusal is about the images, not the layout
            folder = tmp_path / "bad" / split / colour
            folder.mkdir(parents=True)
            for name, content in BAD.items():
                (folder / name).write_bytes(content)
    args = ["fit", str(tmp_path / "bad"), "--arch", "simple_cnn", "--size", "16", "--device", "cpu",
            "--path", str(tmp_path / "run")]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable images" in errors[0]
