"""fastai v1's data API (issue 22, point 1), against fastai1's vision/data.py, vision/transform.py
and vision/image.py: get_transforms' parameters and defaults, ds_tfms (no augmentation without
it), normalize + the stats, DataBunch.create, the list constructors, open_image / open_mask, and
SegmentationDataBunch's codes list and valid.txt."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image as PILImage
from torch.utils.data import TensorDataset

from learnkit import (
    DataBunch,
    DatasetType,
    ImageDataBunch,
    SegmentationDataBunch,
    cifar_stats,
    get_transforms,
    imagenet_stats,
    mnist_stats,
    open_image,
    open_mask,
)
from learnkit.data import Augment, Normalize
from learnkit.data.aug_config import PRESETS
from learnkit.errors import UsageError
from tests.core.tiny_images import CLASSES, make_class_folder, make_seg_folder


def test_stats_are_v1s():
    # fastai1 vision/data.py
    assert cifar_stats == ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])
    assert imagenet_stats == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert mnist_stats == ([0.15] * 3, [0.15] * 3)


def test_get_transforms_defaults_and_parameters_are_v1s():
    train, valid = get_transforms()
    assert valid == [] and train == PRESETS["fastai"]
    # v1: do_flip=True, flip_vert=False, max_rotate=10, max_zoom=1.1, max_lighting=0.2,
    # max_warp=0.2, p_affine=0.75, p_lighting=0.75
    assert (train.flip, train.flip_vert, train.max_rotate, train.max_zoom) == (True, False, 10.0, 1.1)
    assert (train.max_lighting, train.max_warp, train.p_affine, train.p_lighting) == (0.2, 0.2, 0.75, 0.75)
    t, _ = get_transforms(do_flip=False, flip_vert=True, max_rotate=0.0, max_zoom=1.0, max_warp=0.0)
    assert not t.flip and not t.flip_vert and t.max_rotate == 0 and not t.geometric  # v1: no flip at all
    with pytest.raises(UsageError, match="xtra_tfms"):
        get_transforms(xtra_tfms=[lambda x: x])


def _augments(data) -> list:
    return [t for t in data.train_dl.tfms if isinstance(t, Augment)]


def test_from_folder_augments_only_with_ds_tfms(tmp_path):
    root = make_class_folder(tmp_path / "d")
    plain = ImageDataBunch.from_folder(root, size=16, bs=4, device="cpu")
    assert _augments(plain) == []  # v1's ds_tfms=None: nothing
    aug = ImageDataBunch.from_folder(root, ds_tfms=get_transforms(max_rotate=5), size=16, bs=4, device="cpu")
    (tfm,) = _augments(aug)
    assert tfm.settings.max_rotate == 5.0 and tfm.settings.max_warp == 0.2
    assert (plain.batch_size, plain.c, plain.classes) == (4, 3, sorted(CLASSES))
    assert len(plain.train_ds) == 15 and len(plain.valid_ds) == 9


def test_from_folder_test_folder_and_train_dot(tmp_path):
    root = make_class_folder(tmp_path / "d")
    (root / "test").mkdir()
    for f in sorted((root / "valid" / "red").iterdir()):
        (root / "test" / f.name).write_bytes(f.read_bytes())
    data = ImageDataBunch.from_folder(root, test="test", size=16, bs=4, device="cpu")
    assert len(data.test_ds) == 3
    flat = ImageDataBunch.from_folder(root / "train", train=".", valid_pct=0.2, seed=1, size=16, device="cpu")
    assert len(flat.train_ds) + len(flat.valid_ds) == 15 and len(flat.valid_ds) == 3


def test_normalize_replaces_the_statistics(tmp_path):
    data = ImageDataBunch.from_folder(make_class_folder(tmp_path / "d"), size=16, bs=9, device="cpu")
    raw = torch.stack([data.valid_ds[i][0] for i in range(9)]).float() / 255
    assert data.normalize(cifar_stats) is data
    x, _ = data.one_batch(DatasetType.Valid)
    mean = torch.tensor(cifar_stats[0]).view(1, 3, 1, 1)
    std = torch.tensor(cifar_stats[1]).view(1, 3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)
    assert data.norm_stats == {"mean": cifar_stats[0], "std": cifar_stats[1]}
    assert sum(isinstance(t, Normalize) for t in data.valid_dl.tfms) == 1
    # v1: normalize() without stats uses one training batch's
    data.normalize()
    xb, _ = data.one_batch()
    assert xb.mean(dim=(0, 2, 3)).abs().max() < 1e-4


def test_databunch_create_from_any_torch_datasets():
    x, y = torch.randn(20, 3, 8, 8), torch.arange(20) % 2
    train, valid = TensorDataset(x, y), TensorDataset(x[:6], y[:6])
    data = DataBunch.create(train, valid, bs=8, classes=["a", "b"], device="cpu")
    assert data.batch_size == 8 and data.c == 2 and data.classes == ["a", "b"]
    assert len(data.train_dl) == 2 and len(data.valid_dl) == 1  # train drops its last partial batch
    xb, yb = data.one_batch()
    assert xb.shape == (8, 3, 8, 8) and yb.shape == (8,)
    assert DataBunch.create(train, valid, test_ds=valid, bs=4, val_bs=3, device="cpu").test_dl.batch_size == 3


def test_show_batch_is_a_figure(tmp_path):
    data = ImageDataBunch.from_folder(make_class_folder(tmp_path / "d"), size=16, bs=4, device="cpu")
    fig = data.show_batch(rows=2, figsize=(4, 4))
    assert isinstance(fig, Figure) and tuple(fig.get_size_inches()) == (4, 4)
    assert sorted(ax.get_title() for ax in fig.axes) == sorted(
        data.classes[int(y)] for y in data.one_batch()[1]
    )


def test_list_constructors(tmp_path):
    root = make_class_folder(tmp_path / "d")
    files = sorted(p.relative_to(root) for p in root.rglob("*.png"))
    labels = [p.parent.name for p in files]
    data = ImageDataBunch.from_lists(root, files, labels, valid_pct=0.25, seed=0, size=16, device="cpu")
    assert data.classes == sorted(CLASSES) and len(data.valid_ds) == 6 and len(data.train_ds) == 18
    by_re = ImageDataBunch.from_name_re(root, files, r"/([a-z]+)\d+\.png$", size=16, device="cpu")
    assert by_re.classes == sorted(CLASSES) and len(by_re.valid_ds) == round(24 * 0.2)  # v1's 0.2
    by_func = ImageDataBunch.from_name_func(root, files, lambda f: f.parent.name, size=16, device="cpu")
    assert [by_func.classes[int(y)] for _, y in by_func.valid_ds] == [
        by_re.classes[int(y)] for _, y in by_re.valid_ds
    ]
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"name": [str(f.with_suffix("")) for f in files], "label": labels})
    by_df = ImageDataBunch.from_df(root, df, suffix=".png", size=16, device="cpu")
    assert by_df.classes == sorted(CLASSES) and len(by_df.train_ds) + len(by_df.valid_ds) == 24


def test_open_image_and_open_mask_as_v1(tmp_path):
    arr = np.zeros((5, 7, 3), dtype=np.uint8)
    arr[..., 0] = 255
    PILImage.fromarray(arr).save(tmp_path / "a.png")
    img = open_image(tmp_path / "a.png")
    assert str(img) == repr(img) == "Image (3, 5, 7)" and img.size == (5, 7)
    assert (
        img.data.dtype == torch.float32
        and float(img.data[0].min()) == 1.0
        and float(img.data[1].max()) == 0.0
    )
    assert img._repr_png_().startswith(b"\x89PNG")
    fig = Figure()
    ax = fig.subplots()
    assert img.show(ax=ax, title="red") is ax and ax.get_title() == "red"
    mask = np.zeros((5, 7), dtype=np.uint8)
    mask[1:3] = 255
    PILImage.fromarray(mask).save(tmp_path / "m.png")
    m = open_mask(tmp_path / "m.png", div=True)
    assert (
        str(m) == "ImageSegment (1, 5, 7)"
        and m.data.dtype == torch.int64
        and m.data.unique().tolist() == [0, 1]
    )


def test_segmentation_codes_list_and_valid_txt(tmp_path):
    root = make_seg_folder(tmp_path / "s")
    (root / "valid.txt").write_text("im1.png\nim4.png\n")
    data = SegmentationDataBunch.from_folder(
        root, size=16, bs=2, codes=["void", "square"], valid="valid.txt", device="cpu"
    )
    assert data.classes == ["void", "square"]
    assert sorted(p.name for p in data.valid_ds.paths) == ["im1.png", "im4.png"] and len(data.train_ds) == 4
    assert _augments(data) == []
