"""TTA: the 8 versions by hand, mapping masks back, beta=1 == get_preds, losses from probabilities."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from learnkit import DataBunch, ImageDataBunch, Learner, SegmentationDataBunch, accuracy
from learnkit.errors import UsageError
from learnkit.tta import loss_from_preds, tta_average, tta_boxes, tta_report, tta_restore, tta_versions
from learnkit.vision import cnn_learner
from tests.core.tiny_images import make_class_folder, make_seg_folder, tiny_seg

# bilinear 4 -> 8 upsampling (align_corners=False) of the ramp 0, 1, 2, 3, by hand:
# output pixel i samples the input at (i + 0.5) / 2 - 0.5, clamped to [0, 3]
RAMP_X2 = torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", metrics=[accuracy], path=root / "run")
    torch.manual_seed(0)
    learn.fit(1, 1e-2)
    return learn


def test_crop_boxes_by_hand():
    assert tta_boxes(4, 4, 2.0) == [(0, 0), (4, 0), (0, 4), (4, 4)]
    assert tta_boxes(10, 20, 1.35) == [(0, 0), (4, 0), (0, 7), (4, 7)]  # zoomed to 14 x 27
    assert tta_boxes(8, 8, 1.0) == [(0, 0)] * 4
    with pytest.raises(UsageError):
        tta_boxes(8, 8, 0.9)


def test_the_eight_versions_are_corner_crops_of_the_zoom_and_their_flips():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # x[i, j] = 4 i + j
    zoomed = 4 * RAMP_X2[:, None] + RAMP_X2[None, :]  # separable: the 8 x 8 zoom, by hand
    versions = tta_versions(x, scale=2.0)
    assert len(versions) == 8 and all(v.shape == x.shape for v in versions)
    corners = [zoomed[:4, :4], zoomed[4:, :4], zoomed[:4, 4:], zoomed[4:, 4:]]  # TL, BL, TR, BR
    for i, corner in enumerate(corners):
        assert torch.allclose(versions[i][0, 0], corner)
        assert torch.allclose(versions[i + 4][0, 0], corner.flip(-1))
    assert versions[0][0, 0, 0].tolist() == [0.0, 0.25, 0.75, 1.25]
    assert versions[7][0, 0, 3].tolist() == [15.0, 14.75, 14.25, 13.75]  # bottom-right, flipped


def test_scale_one_gives_the_image_and_its_mirror():
    x = torch.rand(2, 3, 5, 6)
    versions = tta_versions(x, scale=1.0)
    for i in range(4):
        assert torch.equal(versions[i], x) and torch.equal(versions[i + 4], x.flip(-1))
        for v in (i, i + 4):
            restored, covered = tta_restore(versions[v], v, 1.0)
            assert covered.all() and torch.allclose(restored, x, atol=1e-6)


def test_restore_maps_each_version_back_to_the_original_frame():
    # a linear ramp survives bilinear zoom and bilinear resampling exactly, away from the borders
    h = w = 20
    ramp = (torch.arange(w, dtype=torch.float32)[None, :] * 2 + torch.arange(h)[:, None] * 0.5)[None, None]
    total = torch.zeros(h, w)
    for v, version in enumerate(tta_versions(ramp, 1.35)):
        restored, covered = tta_restore(version, v, 1.35)
        inner = covered.clone()
        for dim in (0, 1):  # drop 2 pixels on each side of the crop's edges and the image's
            for shift in (-2, -1, 1, 2):
                inner &= covered.roll(shift, dim)
        inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
        assert inner.sum() > 50
        assert torch.allclose(restored[0, 0][inner], ramp[0, 0][inner], atol=1e-4)
        total += covered
    assert total.min() >= 2 and total.max() == 8  # every pixel seen by a crop and its flip at least
    # coverage at scale 2 on a 4 x 4 image, by hand: the top-left crop sees the top-left 2 x 2 pixels
    _, covered = tta_restore(torch.zeros(1, 1, 4, 4), 0, 2.0)
    assert covered.nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    _, covered = tta_restore(torch.zeros(1, 1, 4, 4), 7, 2.0)
    assert covered.nonzero().tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]


def test_tta_beta_one_equals_get_preds(learn):
    preds, y = learn.get_preds()
    tta_preds, tta_y = learn.TTA(beta=1.0)
    assert torch.equal(tta_preds, preds) and torch.equal(tta_y, y)


def test_tta_is_beta_plain_plus_the_mean_of_the_eight(learn):
    x, y = map(torch.cat, zip(*learn.data.valid_dl))
    model = learn.model.eval()
    with torch.no_grad():
        plain = torch.softmax(model(x), 1)
        mean8 = torch.stack([torch.softmax(model(v), 1) for v in tta_versions(x, 1.35)]).mean(0)
    preds, targets, losses = learn.TTA(beta=0.4, scale=1.35, with_loss=True)
    assert torch.allclose(preds, 0.4 * plain + 0.6 * mean8, atol=1e-6)
    assert torch.equal(targets, y)
    assert torch.allclose(losses, F.nll_loss(preds.log(), y, reduction="none"), atol=1e-6)
    plain_again, avg, _ = learn.TTA(beta=None)
    assert torch.allclose(plain_again, plain, atol=1e-6) and torch.allclose(avg, mean8, atol=1e-6)


def test_losses_come_from_the_probabilities_never_probabilities_as_logits():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]])
    y = torch.tensor([1, 2])
    nll = -p[torch.arange(2), y].log()
    assert torch.allclose(loss_from_preds(nn.CrossEntropyLoss(), p, y), nll)
    smoothed = nn.CrossEntropyLoss(label_smoothing=0.3)
    want = 0.7 * nll + 0.3 * -p.log().mean(1)
    assert torch.allclose(loss_from_preds(smoothed, p, y), want, atol=1e-6)
    assert torch.allclose(loss_from_preds(nn.CrossEntropyLoss(), p, y, reduce=True), nll.mean())
    q, t = torch.tensor([[0.8, 0.3]]), torch.tensor([[1.0, 0.0]])
    bce = F.binary_cross_entropy(q, t, reduction="none")
    assert torch.allclose(loss_from_preds(nn.BCEWithLogitsLoss(), q, t), bce, atol=1e-6)
    assert torch.allclose(loss_from_preds(nn.MSELoss(), q, t), (q - t) ** 2)  # no activation: as is


def test_tta_report_gives_both_sides(learn):
    report = tta_report(learn, beta=0.4)
    assert report["items"] == 9 and set(report) == {"items", "beta", "scale", "flip", "plain", "tta"}
    valid_loss, acc = learn.validate()
    assert report["plain"]["loss"] == pytest.approx(valid_loss, rel=1e-5)
    assert report["plain"]["accuracy"] == pytest.approx(acc)
    preds, y, losses = learn.TTA(beta=0.4, with_loss=True)
    assert report["tta"]["loss"] == pytest.approx(float(losses.mean()), rel=1e-5)
    assert report["tta"]["accuracy"] == pytest.approx(float((preds.argmax(1) == y).float().mean()))


def test_dense_outputs_are_averaged_in_the_original_frame():
    # a per-pixel linear model with no activation (MSE): on a ramp, every restored version agrees
    # with the plain output wherever its crop sees the pixel (away from the edges)
    x = (torch.arange(24.0)[None, :] + torch.arange(24.0)[:, None]).expand(1, 3, 24, 24) / 48
    conv = nn.Conv2d(3, 2, 1)
    avg = tta_average(lambda b: conv(b), x, 1.35).detach()
    plain = conv(x).detach()
    assert avg.shape == plain.shape
    assert torch.allclose(avg[..., 3:-3, 3:-3], plain[..., 3:-3, 3:-3], atol=1e-4)
    # an output at half the resolution is mapped back the same way
    half = tta_average(lambda b: F.avg_pool2d(conv(b), 2), x, 1.35).detach()
    want = F.avg_pool2d(plain, 2)
    assert half.shape == want.shape == (1, 2, 12, 12)
    assert torch.allclose(half[..., 2:-2, 2:-2], want[..., 2:-2, 2:-2], atol=1e-4)
    data = DataBunch(DataLoader(TensorDataset(x, plain), 1), DataLoader(TensorDataset(x, plain), 1),
                     task="custom", loss_func=nn.MSELoss())  # fmt: skip
    learn = Learner(data, conv)
    preds, _ = learn.TTA(beta=0.0)
    assert torch.allclose(preds, avg, atol=1e-6)


def test_segmentation_tta(tmp_path):
    data = SegmentationDataBunch.from_folder(make_seg_folder(tmp_path, n=10), size=16, bs=2, device="cpu")
    torch.manual_seed(0)
    learn = Learner(data, tiny_seg(2))
    preds, y = learn.get_preds()
    tta_preds, tta_y, losses = learn.TTA(with_loss=True)
    n = len(data.valid_ds)
    assert tta_preds.shape == preds.shape == (n, 2, 16, 16) and torch.equal(tta_y, y)
    assert torch.allclose(tta_preds.sum(1), torch.ones(n, 16, 16), atol=1e-5)
    assert torch.allclose(losses, F.nll_loss(tta_preds.log(), y, reduction="none"), atol=1e-5)
    assert torch.equal(learn.TTA(beta=1.0)[0], preds)


def test_predict_with_tta_equals_the_tta_row(learn):
    from learnkit.inference import predict_images

    preds, _ = learn.TTA(beta=0.4, scale=1.35)
    paths = learn.data.valid_ds.paths[:3]
    rows = list(predict_images(learn, paths, tta=True))
    for i, path in enumerate(paths):
        probs = learn.predict(path, tta=True)[2]
        assert torch.allclose(probs, preds[i], atol=1e-6)
        assert rows[i].probability == pytest.approx(float(preds[i].max()), abs=1e-6)


def test_without_flips_only_the_four_crops():
    from learnkit.tta import tta_versions

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert len(tta_versions(x, 1.25)) == 8
    crops = tta_versions(x, 1.25, flip=False)
    assert len(crops) == 4 and all(torch.equal(a, b) for a, b in zip(crops, tta_versions(x, 1.25)[:4]))
