"""Checkpoint files: round trip, JSON metadata, names and atomic writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from learnkit import checkpoint
from learnkit.checkpoint import (
    MODEL_FORMAT,
    optimizer_path,
    read_safetensors,
    resolve_checkpoint,
    write_safetensors,
)

ROOT = Path(__file__).resolve().parents[2]


def _tensors() -> dict[str, torch.Tensor]:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    return {
        "w": base,
        "w_t": base.t(),  # not contiguous: written contiguous
        "row": base[1],  # shares base's storage: written as its own copy
        "count": torch.tensor(7, dtype=torch.int64),
        "half": torch.ones(2, dtype=torch.bfloat16),
    }


def test_round_trip_with_json_metadata(tmp_path):
    meta = {"format": MODEL_FORMAT, "classes": ["cat", "dog"], "size": 64, "norm": {"mean": [0.5]}, "x": None}
    path = write_safetensors(tmp_path / "models" / "last.safetensors", _tensors(), meta)
    assert path == tmp_path / "models" / "last.safetensors"
    tensors, read_meta = read_safetensors(path, expect_format=MODEL_FORMAT)
    assert read_meta == meta
    for key, value in _tensors().items():
        assert torch.equal(tensors[key], value) and tensors[key].dtype == value.dtype
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # on disk every value is JSON text
        assert f.metadata()["classes"] == json.dumps(["cat", "dog"])


def test_written_file_has_a_normal_mode_and_no_temp_left(tmp_path):
    path = write_safetensors(tmp_path / "a.safetensors", {"x": torch.ones(1)}, {})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def _write_old(tmp_path) -> Path:
    path = tmp_path / "best.safetensors"
    write_safetensors(path, {"x": torch.zeros(3)}, {"format": MODEL_FORMAT, "v": "old"})
    return path


def _assert_old_intact(path: Path) -> None:
    tensors, meta = read_safetensors(path, MODEL_FORMAT)
    assert meta["v"] == "old" and torch.equal(tensors["x"], torch.zeros(3))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the temp file is gone too


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = _write_old(tmp_path)

    def failing_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(checkpoint.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_safetensors(path, {"x": torch.ones(3)}, {"format": MODEL_FORMAT, "v": "new"})
    monkeypatch.undo()
    _assert_old_intact(path)


def test_a_writer_dying_half_way_leaves_the_old_file(tmp_path, monkeypatch):
    path = _write_old(tmp_path)

    def half_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")  # a torn file...
        raise KeyboardInterrupt  # ... then the process is interrupted

    monkeypatch.setattr(checkpoint, "save_file", half_write)
    with pytest.raises(KeyboardInterrupt):
        write_safetensors(path, {"x": torch.ones(3)}, {"format": MODEL_FORMAT, "v": "new"})
    _assert_old_intact(path)


def test_unjsonable_metadata_fails_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError):
        write_safetensors(tmp_path / "m.safetensors", {"x": torch.ones(1)}, {"bad": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("best", "run/models/best.safetensors"),
        ("stage-1", "run/models/stage-1.safetensors"),
        ("elsewhere/best.safetensors", "elsewhere/best.safetensors"),
        ("best.safetensors", "best.safetensors"),
        ("sub/best", "sub/best"),
        ("weights.pth", "weights.pth"),
    ],
)
def test_resolve_checkpoint(value, expected):
    assert resolve_checkpoint(value, path="run") == Path(expected)


def test_resolve_checkpoint_model_dir_and_optimizer_path():
    path = resolve_checkpoint("last", path="/tmp/r", model_dir="ckpt")
    assert path == Path("/tmp/r/ckpt/last.safetensors")
    assert optimizer_path(path) == Path("/tmp/r/ckpt/last.opt.safetensors")


def test_no_pickle_anywhere_in_the_package():
    """Checkpoints and weights are never unpickled: no pickle import, torch.load only weights_only."""
    offenders = []
    for folder in ("learnkit", "zoo", "cli"):
        for file in (ROOT / folder).rglob("*.py"):
            text = file.read_text()
            if re.search(r"^\s*(import|from)\s+(c?pickle|dill|joblib)\b", text, re.M):
                offenders.append(f"{file}: imports pickle")
            for call in re.findall(r"torch\.load\([^)]*\)", text):
                if "weights_only=True" not in call:
                    offenders.append(f"{file}: {call}")
    assert offenders == []
