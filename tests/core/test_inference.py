"""predict / pred_batch / predict_images / load_learner on tiny image folders and real checkpoints."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit import DatasetType, ImageDataBunch, Learner, SegmentationDataBunch, accuracy, registry
from learnkit.errors import CheckpointError, UsageError
from learnkit.inference import expand_items, predict_images, save_mask
from learnkit.vision import cnn_learner
from learnkit.vision.learners import load_learner
from tests.core.tiny import tiny_data, tiny_model
from tests.core.tiny_images import CLASSES, make_class_folder, make_seg_folder, tiny_seg, write_corrupt


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    """simple_cnn from the zoo, trained for one epoch on a 3-class folder, saved as ``m``."""
    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", metrics=[accuracy], path=root / "run")
    torch.manual_seed(0)
    learn.fit(1, 1e-2)
    learn.save("m", with_opt=False)
    return learn


@pytest.fixture
def seg_learn(tmp_path):
    """A per-pixel model on a segmentation folder, through a zoo entry registered for the test."""
    registry.register("test_tiny_seg", tiny_seg, meta={"min_size": 4})
    try:
        data = SegmentationDataBunch.from_folder(
            make_seg_folder(tmp_path / "seg"), size=16, bs=4, device="cpu"
        )
        spec = {"kind": "plain", "arch": "test_tiny_seg", "n_out": 2, "kwargs": {}}
        torch.manual_seed(0)
        yield Learner(data, tiny_seg(2), path=tmp_path / "run", model_spec=spec)
    finally:
        registry._reset()


def test_predict_equals_get_preds_for_each_image(learn):
    preds, targets = learn.get_preds()
    for i, path in enumerate(learn.data.valid_ds.paths):
        label, index, probs = learn.predict(path)
        assert torch.allclose(probs, preds[i], atol=1e-6)
        assert index == int(preds[i].argmax()) and label == CLASSES[index]
        assert probs.shape == (3,) and abs(float(probs.sum()) - 1) < 1e-5


def test_predict_takes_pil_images_and_data_set_tensors(learn):
    preds, _ = learn.get_preds()
    path = learn.data.valid_ds.paths[4]
    with Image.open(path) as img:
        from_pil = learn.predict(img.convert("RGBA"))[2]  # any mode becomes RGB, as for files
    from_item = learn.predict(learn.data.valid_ds[4][0])[2]  # uint8 3 x 16 x 16, as the data set yields
    raw = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    from_raw = learn.predict(raw)[2]  # uint8 at the file's own size: resized like the file
    for probs in (from_pil, from_item, from_raw):
        assert torch.allclose(probs, preds[4], atol=1e-6)
    with pytest.raises(UsageError, match="16 x 16"):
        learn.predict(torch.rand(3, 20, 20))


def test_pred_batch_and_reconstruct(learn):
    batch = learn.data.one_batch(DatasetType.Valid)
    probs = learn.pred_batch(DatasetType.Valid, batch)
    preds, _ = learn.get_preds()
    assert torch.allclose(probs, preds[: len(probs)], atol=1e-6)
    labels = learn.pred_batch(DatasetType.Valid, batch, reconstruct=True)
    assert labels == [CLASSES[int(i)] for i in probs.argmax(1)]
    assert torch.allclose(learn.pred_batch(), probs)  # default: the first valid batch


def test_load_learner_predicts_as_the_original(learn):
    run = learn.path
    clone = load_learner("m", path=run, device="cpu")
    assert clone.data.classes == list(CLASSES) and clone.data.size == 16
    assert clone.data.norm_stats == learn.data.norm_stats
    assert clone.model_spec == learn.model_spec
    by_file = load_learner(run / "models" / "m.safetensors", device="cpu")
    for path in learn.data.valid_ds.paths[:4]:
        want = learn.predict(path)
        for other in (clone, by_file):
            got = other.predict(path)
            assert got[:2] == want[:2] and torch.equal(got[2], want[2])
    with_data = load_learner("m", path=run, data=learn.data, metrics=[accuracy])
    assert torch.equal(with_data.get_preds()[0], learn.get_preds()[0])
    assert with_data.validate() == pytest.approx(learn.validate())


def test_load_learner_refusals(learn, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint .*checkpoints in .*: m"):
        load_learner("nope", path=learn.path)
    plain = Learner(tiny_data(), tiny_model(), path=tmp_path)
    plain.save("hand", with_opt=False)
    with pytest.raises(CheckpointError, match="no model_spec.*build the model yourself"):
        load_learner("hand", path=tmp_path)
    other = ImageDataBunch.from_folder(make_class_folder(tmp_path / "two", 2, 1), size=16, device="cpu")
    other.classes = ["a", "b", "c"]
    with pytest.raises(CheckpointError, match="classes"):
        load_learner("m", path=learn.path, data=other)


def test_predict_images_batches_and_isolates_a_corrupt_file(learn, tmp_path):
    good = learn.data.valid_ds.paths[:5]
    bad = write_corrupt(tmp_path / "broken.png")
    paths = [*good[:2], bad, *good[2:]]
    sizes = []
    hook = learn.model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    try:
        rows = list(predict_images(learn, iter(paths), bs=3, topk=2))
    finally:
        hook.remove()
    assert sizes == [2, 3]  # batched: [good, good, bad] then [good, good, good]
    assert [r.path for r in rows] == [str(p) for p in paths]
    assert not rows[2].ok and str(bad) in rows[2].error and "\n" not in rows[2].error
    assert rows[2].to_dict() == {"path": str(bad), "error": rows[2].error}
    for row in (rows[0], rows[1], rows[3], rows[4], rows[5]):
        label, index, probs = learn.predict(row.path)
        assert row.ok and row.label == label and row.index == index
        assert row.probability == pytest.approx(float(probs[index]), abs=1e-6)
        assert [lbl for lbl, _ in row.topk] == [CLASSES[i] for i in probs.topk(2).indices]
        assert set(row.to_dict()) == {"path", "label", "index", "probability", "topk"}


def test_expand_items_folders_globs_and_stdin(tmp_path):
    root = make_class_folder(tmp_path / "d", n_train=1, n_valid=2)
    (root / "valid" / ".hidden.png").write_bytes(b"")
    (root / "valid" / "notes.txt").write_text("not an image")
    valid = sorted((root / "valid").rglob("[!.]*.png"))
    assert list(expand_items([root / "valid"])) == valid  # recursive, sorted, hidden left out
    pattern = str(root / "valid" / "*" / "red*.png")
    assert list(expand_items([pattern])) == [p for p in valid if p.name.startswith("red")]
    stdin = io.StringIO(f"{valid[0]}\n\n{valid[1]}\n")
    missing = tmp_path / "missing.png"
    got = list(expand_items([missing, "-", valid[2]], stdin=stdin))
    assert got == [missing, valid[0], valid[1], valid[2]]  # a missing file is kept: it gets an error row


def test_segmentation_predict_gives_a_mask_at_the_original_size(seg_learn, tmp_path):
    preds, _ = seg_learn.get_preds()
    path = seg_learn.data.valid_ds.paths[0]
    mask, small, probs = seg_learn.predict(path)
    assert mask.shape == (20, 24) and mask.dtype == torch.long  # the file is 24 wide, 20 high
    assert small.shape == (16, 16) and torch.equal(small, probs.argmax(0))
    assert torch.allclose(probs, preds[0], atol=1e-6)
    assert set(mask.unique().tolist()) <= {0, 1}

    seg_learn.save("seg", with_opt=False)
    clone = load_learner("seg", path=seg_learn.path, device="cpu")
    assert clone.data.task == "segmentation" and torch.equal(clone.predict(path)[0], mask)
    rows = list(predict_images(clone, [path, tmp_path / "missing.png"], bs=4))
    assert torch.equal(rows[0].mask, mask) and not rows[1].ok
    assert sum(rows[0].to_dict()["pixels"].values()) == pytest.approx(1.0)

    mask_file, overlay = save_mask(mask, tmp_path / "out" / "m.png", image=path)
    with Image.open(mask_file) as img:
        assert img.mode == "P" and np.array_equal(np.asarray(img), mask.numpy())
    with Image.open(overlay) as img:
        assert img.mode == "RGB" and img.size == (24, 20)
