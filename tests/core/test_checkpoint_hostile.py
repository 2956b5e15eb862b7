"""Hostile and broken checkpoint files: each refused with one line, exit code 4, nothing run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from learnkit import checkpoint
from learnkit.checkpoint import (
    MODEL_FORMAT,
    OPT_FORMAT,
    load_weights,
    read_safetensors,
    read_state_dict,
    write_safetensors,
)
from learnkit.errors import CheckpointError


def _raw(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data


def _refused(path: Path, match: str, **kwargs) -> CheckpointError:
    with pytest.raises(CheckpointError, match=match) as err:
        read_safetensors(path, **kwargs)
    assert "\n" not in str(err.value) and err.value.exit_code == 4
    return err.value


@pytest.fixture
def good(tmp_path) -> Path:
    path = tmp_path / "good.safetensors"
    write_safetensors(path, {"w": torch.randn(64, 64), "b": torch.zeros(64)}, {"format": MODEL_FORMAT})
    return path


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "only 0 bytes"),
        (b"\x01\x02\x03", "only 3 bytes"),
        (b"\xff" * 7 + b"\x7f{}", "header length 92\\d+ does not fit a file of 10 bytes"),
        (b"this is a text file, not weights\n" * 4, "header length \\d+ does not fit"),
        (_raw(b"{not json"), "header: "),
        (_raw(b"\xff\xfe{}"), "header: "),
        (_raw([1, 2, 3]), "header is not a JSON object"),
        (_raw({"__metadata__": {"format": 5}}), "metadata is not a map of strings"),
        (
            _raw({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 4),
            "not a usable",
        ),
        (_raw({"w": {"dtype": "X99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "not a usable"),
        (_raw({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "not a usable"),
        (_raw({"w": "nonsense"}, b""), "not a usable"),
    ],
)
def test_malformed_files_are_refused(tmp_path, content, reason):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    error = _refused(path, reason)
    assert str(error).startswith(f"{path}: not a usable learnkit checkpoint (")


@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_truncated_file_is_refused(good, keep):
    data = good.read_bytes()
    good.write_bytes(data[: int(len(data) * keep)])
    _refused(good, "not a usable learnkit checkpoint")


def test_a_missing_file_and_a_folder_are_refused(tmp_path):
    _refused(tmp_path / "nope.safetensors", "no such checkpoint file")
    _refused(tmp_path, "no such checkpoint file")


def test_an_oversized_header_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    path.write_bytes(_raw({"__metadata__": {"pad": "x" * 300}}))
    monkeypatch.setattr(checkpoint, "MAX_HEADER_BYTES", 256)
    _refused(path, "header length 3\\d\\d does not fit")


def test_the_wrong_kind_of_file_is_refused(tmp_path, good):
    _refused(
        good,
        "wrong checkpoint kind \\(format 'learnkit.model/1', expected 'learnkit.opt/1'\\)",
        expect_format=OPT_FORMAT,
    )
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.ones(2)}, str(plain), metadata={"format": "pt"})  # e.g. a Hugging Face file
    _refused(
        plain,
        "not a usable learnkit checkpoint \\(metadata 'format' is not JSON\\)",
        expect_format=MODEL_FORMAT,
    )
    assert read_safetensors(plain)[1] == {"format": "pt"}  # without expectations, plain text is kept
    save_file({"w": torch.ones(2)}, str(plain))
    _refused(plain, "not a learnkit checkpoint \\(no format tag", expect_format=MODEL_FORMAT)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tmp_path, bad_value):
    path = tmp_path / "nan.safetensors"
    w = torch.ones(10)
    w[3] = bad_value
    save_file({"ok": torch.ones(2), "w": w}, str(path), metadata={"format": json.dumps(MODEL_FORMAT)})
    _refused(path, "tensor 'w' holds NaN or infinite values", expect_format=MODEL_FORMAT)
    assert read_safetensors(path, check_finite=False)[0]["w"][3].item() != 1.0


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # would create the marker when unpickled


def test_a_pickle_with_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights.pth"
    torch.save({"w": torch.ones(1), "evil": _Evil(marker)}, weights)
    with pytest.raises(CheckpointError, match="weights.pth: not a usable learnkit checkpoint"):
        read_state_dict(weights)
    assert not marker.exists()


def test_torch_state_dict_files_are_unwrapped_and_checked(tmp_path):
    file = tmp_path / "w.pt"
    torch.save({"state_dict": {"module.a": torch.ones(2), "module.b": torch.zeros(1)}}, file)
    assert set(read_state_dict(file)) == {"a", "b"}
    torch.save([1, 2, 3], file)
    with pytest.raises(CheckpointError, match="not a state dict of named tensors"):
        read_state_dict(file)
    torch.save({"a": torch.tensor([float("nan")])}, file)
    with pytest.raises(CheckpointError, match="NaN"):
        read_state_dict(file)
    file.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="w.pt: not a usable"):
        read_state_dict(file)


def test_weights_that_do_not_fit_are_refused_by_kind_not_precision():
    model = torch.nn.Linear(2, 2)
    ints = {"weight": torch.ones(2, 2, dtype=torch.int64), "bias": torch.zeros(2)}
    with pytest.raises(
        CheckpointError, match=r"w.safetensors: weights do not fit the model \(shape/dtype mismatch: weight"
    ):
        load_weights(model, ints, "w.safetensors")
    with pytest.raises(CheckpointError, match=r"missing: bias; unexpected: extra"):
        load_weights(model, {"weight": torch.ones(2, 2), "extra": torch.ones(1)}, "w")
    load_weights(model, {"weight": torch.ones(2, 2, dtype=torch.float16), "bias": torch.zeros(2)}, "w")
    assert model.weight.dtype == torch.float32 and bool((model.weight == 1).all())
