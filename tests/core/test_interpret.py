"""ClassificationInterpretation on a hand-made prediction set, and its plots; show_results."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from learnkit import ImageDataBunch, Learner, SegmentationDataBunch
from learnkit.interpret import ClassificationInterpretation
from learnkit.vision import cnn_learner
from tests.core.tiny_images import CLASSES, make_class_folder, make_seg_folder, tiny_seg

# 8 items over classes a, b, c: the targets, the predicted classes and the losses, by hand
TARGETS = [0, 0, 1, 1, 2, 2, 2, 0]
PREDICTED = [0, 1, 1, 2, 2, 2, 0, 1]
LOSSES = [0.1, 2.0, 0.3, 1.5, 0.2, 0.05, 3.0, 0.9]


def hand_made(path=".") -> ClassificationInterpretation:
    preds = torch.full((8, 3), 0.1)
    preds[torch.arange(8), torch.tensor(PREDICTED)] = 0.8
    return ClassificationInterpretation(preds, torch.tensor(TARGETS), torch.tensor(LOSSES), "abc", path=path)


def assert_png(path) -> None:
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 50 and img.height > 50


def test_confusion_matrix_by_hand():
    # actual a: predicted a, b, b; actual b: b, c; actual c: c, c, a
    assert hand_made().confusion_matrix().tolist() == [[1, 2, 0], [0, 1, 1], [1, 0, 2]]


def test_most_confused_by_hand():
    interp = hand_made()
    assert interp.most_confused() == [("a", "b", 2), ("b", "c", 1), ("c", "a", 1)]
    assert interp.most_confused(min_val=2) == [("a", "b", 2)]
    assert interp.most_confused(min_val=3) == []


def test_top_losses_by_hand():
    values, indices = hand_made().top_losses(3)
    assert values.tolist() == pytest.approx([3.0, 2.0, 1.5]) and indices.tolist() == [6, 1, 3]
    values, indices = hand_made().top_losses(2, largest=False)
    assert indices.tolist() == [5, 0]
    assert len(hand_made().top_losses()[0]) == 8


def test_targets_without_a_class_are_not_counted():
    interp = ClassificationInterpretation(
        torch.eye(2), torch.tensor([0, -1]), torch.zeros(2), ["x", "y"]
    )  # e.g. an unlabelled test item
    assert interp.confusion_matrix().tolist() == [[1, 0], [0, 0]]


def test_plots_are_real_pngs(tmp_path):
    interp = hand_made(tmp_path)
    cm = interp.plot_confusion_matrix()
    assert cm == tmp_path / "plots" / "confusion_matrix.png"
    assert_png(cm)
    assert_png(interp.plot_confusion_matrix(normalize=True, name="cm_norm"))
    assert_png(interp.plot_top_losses(4))  # no images: titles only


def test_from_learner(tmp_path):
    data = ImageDataBunch.from_folder(make_class_folder(tmp_path / "d"), size=16, bs=4, device="cpu")
    torch.manual_seed(0)
    learn = cnn_learner(data, "simple_cnn", path=tmp_path / "run")
    interp = learn.interpret()
    preds, targets = learn.get_preds()
    assert torch.allclose(interp.preds, preds) and torch.equal(interp.y_true, targets)
    assert torch.allclose(interp.losses, F.nll_loss(preds.log(), targets, reduction="none"), atol=1e-5)
    cm = interp.confusion_matrix()
    assert int(cm.sum()) == len(targets) == 9 and cm.sum(1).tolist() == [3, 3, 3]
    assert interp.classes == list(CLASSES)
    assert_png(interp.plot_top_losses(4))
    shown = learn.show_results(rows=2)
    assert shown == tmp_path / "run" / "plots" / "results.png"
    assert_png(shown)


def test_segmentation_counts_pixels_and_shows_masks(tmp_path):
    data = SegmentationDataBunch.from_folder(make_seg_folder(tmp_path / "s"), size=16, bs=4, device="cpu")
    torch.manual_seed(0)
    learn = Learner(data, tiny_seg(2), path=tmp_path / "run")
    interp = learn.interpret()
    assert int(interp.confusion_matrix().sum()) == len(data.valid_ds) * 16 * 16
    assert interp.losses.shape == (len(data.valid_ds),)
    assert_png(learn.show_results(rows=1, name="seg"))


def test_segmentation_top_losses_show_image_true_and_predicted_masks(tmp_path):
    from PIL import Image

    data = SegmentationDataBunch.from_folder(make_seg_folder(tmp_path / "s"), size=16, bs=4, device="cpu")
    torch.manual_seed(0)
    interp = Learner(data, tiny_seg(2), path=tmp_path / "run").interpret()
    png = interp.plot_top_losses(2)
    assert_png(png)
    values, indices = interp.top_losses(2)
    with Image.open(png) as img:
        assert img.width > 2 * img.height / len(indices)  # 3 panels across, one row per item
    fig = interp._mask_losses_figure(values.tolist(), indices.tolist(), largest=True)
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 3 * len(indices)
    assert titles[0].endswith(": image") and titles[1].startswith("true mask (loss ")
    assert titles[2].startswith("predicted (") and "true mask / predicted mask" in fig._suptitle.get_text()
