"""``learnkit export``: ONNX and torch.export files that reproduce ``learnkit predict``."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit import ImageDataBunch, SegmentationDataBunch, accuracy
from learnkit.errors import UsageError
from learnkit.export import ExportError, export_checkpoint
from learnkit.vision import cnn_learner
from learnkit.vision.learners import load_learner, unet_learner
from tests.cli.conftest import run_learnkit
from tests.core.tiny_images import CLASSES, make_class_folder, make_seg_folder

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """simple_cnn after one epoch on a 3-class folder at 16 px, saved as ``m``."""
    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", metrics=[accuracy], path=root / "run")
    torch.manual_seed(0)
    learn.fit(1, 1e-2)
    learn.save("m", with_opt=False)
    return root


def _image_batch(paths, size=16):
    """The files as the ONNX graph takes them: resized as predict resizes (the README's steps:
    uint8 3 x H x W, antialiased bilinear interpolate), float32 N x 3 x H x W on the 0..1 scale."""
    out = []
    for p in paths:
        x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).copy()).permute(2, 0, 1)
        x = torch.nn.functional.interpolate(x[None], (size, size), mode="bilinear", antialias=True)[0]
        out.append(x.float().numpy() / 255.0)
    return np.stack(out)


def test_onnx_equals_predict_and_carries_the_metadata(classifier):
    import onnxruntime as ort

    run = classifier / "run"
    result = export_checkpoint("m", path=run, fmt="onnx")
    assert result.file == run / "models" / "m.onnx" and result.file.is_file()
    assert result.max_diff < 1e-4 and result.activation == "softmax"
    session = ort.InferenceSession(str(result.file), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == list(CLASSES)
    assert meta["size"] == "16" and meta["task"] == "classification" and meta["learnkit_version"]
    learn = load_learner("m", path=run, device="cpu")
    paths = sorted((classifier / "valid").rglob("*.png"))[:5]  # 5: not the export's batch size
    probs = session.run(None, {session.get_inputs()[0].name: _image_batch(paths)})[0]
    expected = np.stack([learn.predict(p)[2].numpy() for p in paths])
    assert probs.shape == (5, 3)
    assert np.abs(probs - expected).max() < 1e-4
    assert np.allclose(probs.sum(1), 1, atol=1e-5)


def test_pt2_loads_and_runs_any_batch(classifier, tmp_path):
    run = classifier / "run"
    out = tmp_path / "exported" / "model.pt2"
    result = export_checkpoint("m", path=run, fmt="pt2", out=out)
    assert result.file == out and result.max_diff < 1e-4
    program = torch.export.load(str(out))
    learn = load_learner("m", path=run, device="cpu")
    paths = sorted((classifier / "valid").rglob("*.png"))[:2]
    y = program.module()(torch.from_numpy(_image_batch(paths)))
    expected = torch.stack([learn.predict(p)[2] for p in paths])
    assert y.shape == (2, 3) and (y - expected).abs().max() < 1e-4


@pytest.mark.slow
def test_segmentation_exports_per_pixel_probabilities(tmp_path):
    """A U-Net over timm's tiny test ResNet (the timm plugin's encoder cut, too)."""
    import onnxruntime as ort

    pytest.importorskip("timm")
    data = SegmentationDataBunch.from_folder(make_seg_folder(tmp_path / "seg"), size=32, bs=4, device="cpu")
    learn = unet_learner(data, "timm/test_resnet", path=tmp_path / "run")
    learn.save("seg", with_opt=False)
    result = export_checkpoint("seg", path=tmp_path / "run", fmt="onnx")
    assert result.task == "segmentation" and result.max_diff < 1e-4
    session = ort.InferenceSession(str(result.file), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    probs = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert probs.shape == (2, data.c, 32, 32)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)


def test_a_failed_check_removes_the_file(classifier, tmp_path):
    out = tmp_path / "m.pt2"
    with pytest.raises(ExportError, match="removed"):
        export_checkpoint("m", path=classifier / "run", fmt="pt2", out=out, tolerance=-1.0)
    assert not out.exists()


def test_unknown_format_is_a_usage_error(classifier):
    with pytest.raises(UsageError, match="onnx, pt2"):
        export_checkpoint("m", path=classifier / "run", fmt="tflite")


@pytest.mark.slow
def test_cli_exit_codes(classifier, tmp_path):
    run = classifier / "run"
    ok = run_learnkit("export", "--model", "m", "--path", str(run), "--format", "onnx", "--json",
                      "--out", str(tmp_path / "x.onnx"))  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    row = json.loads(ok.stdout)
    assert row["file"] == str(tmp_path / "x.onnx") and row["max_diff"] < 1e-4
    assert "max |exported - pytorch|" in ok.stderr
    missing = run_learnkit("export", "--model", "nope", "--path", str(run), "--format", "pt2")
    assert missing.returncode == 4 and missing.stderr.count("\n") == 1
    bad = run_learnkit("export", "--model", "m", "--path", str(run), "--format", "tflite")
    assert bad.returncode == 2 and "onnx, pt2" in bad.stderr


@pytest.mark.slow
def test_missing_export_tools_name_the_extra(classifier, tmp_path):
    """Without onnxruntime (hidden from the import system), exit 2 naming learnkit[export]."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "onnxruntime.py").write_text("raise ImportError('hidden for the test')\n")
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(hide)}
    code = "from learnkit.cli.app import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "export", "--model", "m", "--path", str(classifier / "run")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'learnkit[export]'" in proc.stderr
