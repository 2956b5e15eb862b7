"""ImageDataBunch / SegmentationDataBunch from folders: layout, splits, batches, bad input."""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from learnkit.data import IMAGENET_STATS, ImageDataBunch, SegmentationDataBunch, SkippedImagesWarning
from learnkit.errors import DataError, UsageError


def write_image(path: Path, seed: int, size=(24, 18), mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def class_tree(root: Path, counts: dict[str, int], seed=0, ext=".png") -> Path:
    for k, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / name / f"{i}{ext}", seed * 1000 + k * 100 + i)
    return root


@pytest.fixture
def split_folder(tmp_path) -> Path:
    class_tree(tmp_path / "train", {"dog": 7, "cat": 5, "emu": 6})
    class_tree(tmp_path / "valid", {"dog": 2, "cat": 3, "emu": 1}, seed=1)
    (tmp_path / "train" / "notes.txt").write_text("not a class")
    (tmp_path / "train" / "dog" / "readme.md").write_text("not an image")
    return tmp_path


def test_from_folder_train_valid(split_folder):
    data = ImageDataBunch.from_folder(split_folder, size=16, bs=4, device="cpu")
    assert data.classes == ["cat", "dog", "emu"] and data.c == 3
    assert len(data.train_ds) == 18 and len(data.valid_ds) == 6
    assert data.norm_stats == IMAGENET_STATS and data.size == 16 and data.task == "classification"
    assert data.train_ds.cached  # small: the auto cache keeps it in RAM
    assert len(data.train_dl) == 4  # 18 // 4, last partial batch dropped
    x, y = next(iter(data.train_dl))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.long
    xs, ys = zip(*data.valid_dl)
    assert torch.cat(ys).tolist() == [0, 0, 0, 1, 1, 2]
    assert sum(len(v) for v in ys) == 6


def test_labels_follow_folders(split_folder):
    data = ImageDataBunch.from_folder(split_folder, size=8, device="cpu")
    for path, label in zip(data.train_ds.paths, data.train_ds.labels):
        assert path.parent.name == data.classes[label]


def test_given_classes_fix_the_label_order(split_folder):
    data = ImageDataBunch.from_folder(
        split_folder, size=8, device="cpu", classes=["emu", "dog", "cat", "yak"]
    )
    assert data.c == 4 and data.valid_ds.labels == [2, 2, 2, 1, 1, 0]
    with pytest.raises(DataError, match="emu"):
        ImageDataBunch.from_folder(split_folder, size=8, device="cpu", classes=["cat", "dog"])


def test_valid_pct_split_is_fixed_by_the_seed(tmp_path):
    class_tree(tmp_path, {"a": 10, "b": 10})

    def valid_names(seed):
        data = ImageDataBunch.from_folder(tmp_path, valid_pct=0.25, seed=seed, size=8, device="cpu")
        assert len(data.valid_ds) == 5 and len(data.train_ds) == 15 and data.classes == ["a", "b"]
        assert not set(data.valid_ds.paths) & set(data.train_ds.paths)
        return sorted(map(str, data.valid_ds.paths))

    assert valid_names(1) == valid_names(1)
    assert valid_names(1) != valid_names(2)
    with pytest.raises(UsageError):
        ImageDataBunch.from_folder(tmp_path, valid_pct=1.5, size=8, device="cpu")


def test_valid_pct_on_a_train_valid_layout_is_refused(split_folder):
    with pytest.raises(DataError, match="leave out valid_pct"):
        ImageDataBunch.from_folder(split_folder, valid_pct=0.2, device="cpu")


def test_cache_none_gives_the_same_batches(split_folder):
    kw = dict(size=16, bs=4, device="cpu", seed=3)
    ram = ImageDataBunch.from_folder(split_folder, cache="ram", **kw)
    disk = ImageDataBunch.from_folder(split_folder, cache="none", **kw)
    assert ram.train_ds.cached and not disk.train_ds.cached
    for (xa, ya), (xb, yb) in zip(ram.train_dl, disk.train_dl):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    with pytest.raises(UsageError):
        ImageDataBunch.from_folder(split_folder, cache="disk", device="cpu")


@pytest.mark.parametrize("cache", ["ram", "none"])
def test_corrupt_images_are_skipped_with_one_warning(split_folder, cache):
    (split_folder / "train" / "cat" / "0.png").write_bytes(b"")
    (split_folder / "train" / "dog" / "9.png").write_bytes(b"\x89PNG garbage")
    with pytest.warns(SkippedImagesWarning) as record:
        data = ImageDataBunch.from_folder(split_folder, size=8, device="cpu", cache=cache)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 2 of 19" in message and str(split_folder / "train" / "cat" / "0.png") in message
    assert len(data.train_ds) == 17  # 19 files, 2 of them unreadable
    assert len(data.train_ds.skipped) == 2
    next(iter(data.train_dl))


def test_missing_and_empty_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageDataBunch.from_folder(tmp_path / "nowhere", device="cpu")
    with pytest.raises(DataError, match="no 'train' folder"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no images"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")
    write_image(tmp_path / "train" / "cat" / "a.png", 0)
    with pytest.raises(DataError, match="'valid' folder not found"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")


def test_all_images_unreadable_is_a_data_error(tmp_path):
    for split in ("train", "valid"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            (tmp_path / split / name / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")


def test_one_class_one_folder_too_deep_names_the_fix(tmp_path):
    class_tree(tmp_path / "outer", {"a": 4, "b": 4})
    with pytest.raises(DataError, match=r"only one class, 'outer'.*one folder too deep: use .*outer as DATA"):
        ImageDataBunch.from_folder(tmp_path, valid_pct=0.25, device="cpu")
    class_tree(tmp_path / "t" / "train" / "outer", {"a": 2, "b": 2})
    class_tree(tmp_path / "t" / "valid" / "outer", {"a": 1, "b": 1})
    with pytest.raises(DataError, match=r"only one class, 'outer'.*move the class folders"):
        ImageDataBunch.from_folder(tmp_path / "t", device="cpu")


def test_one_plain_class_is_refused(tmp_path):
    class_tree(tmp_path / "train", {"cat": 3})
    class_tree(tmp_path / "valid", {"cat": 1})
    with pytest.raises(DataError, match=r"only one class, 'cat'.*at least 2"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")


def test_validation_class_unknown_to_training(tmp_path):
    class_tree(tmp_path / "train", {"cat": 3, "dog": 3})
    class_tree(tmp_path / "valid", {"cat": 1, "emu": 1})
    with pytest.raises(DataError, match=r"validation class 'emu' is unknown to training.*does not exist"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")
    (tmp_path / "train" / "emu").mkdir()
    with pytest.raises(DataError, match=r"'emu' is unknown to training.*is empty"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")


def test_class_without_training_images_after_the_split(tmp_path):
    class_tree(tmp_path, {"cat": 6, "dog": 6, "emu": 1})
    # find a seed whose split sends the one emu image to validation
    with pytest.raises(DataError, match=r"class 'emu' has no training images after the split"):
        for seed in range(50):
            ImageDataBunch.from_folder(tmp_path, valid_pct=0.5, seed=seed, device="cpu")


def test_empty_validation_set(tmp_path):
    class_tree(tmp_path / "train", {"cat": 3, "dog": 3})
    (tmp_path / "valid" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match=r"validation set .* is empty"):
        ImageDataBunch.from_folder(tmp_path, device="cpu")


def test_rank_shards(split_folder):
    parts = [
        ImageDataBunch.from_folder(split_folder, size=8, bs=2, device="cpu", rank=r, world_size=2)
        for r in (0, 1)
    ]
    assert len(parts[0].train_dl) == len(parts[1].train_dl)
    valid = [torch.cat([y for _, y in p.valid_dl]) for p in parts]
    assert sorted(valid[0].tolist() + valid[1].tolist()) == sorted(parts[0].valid_ds.labels)


def seg_folder(root: Path, n=10, codes=("background", "disc", "bar")) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        write_image(root / "images" / f"im{i}.jpg", i, size=(40, 30))
        mask = rng.integers(0, len(codes), (30, 40), dtype=np.uint8)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
    (root / "codes.txt").write_text("\n".join(codes) + "\n\n")
    return root


def test_segmentation_bunch_shapes(tmp_path):
    data = SegmentationDataBunch.from_folder(seg_folder(tmp_path), size=16, bs=4, valid_pct=0.2, device="cpu")
    assert data.task == "segmentation" and data.classes == ["background", "disc", "bar"] and data.c == 3
    assert len(data.train_ds) == 8 and len(data.valid_ds) == 2
    x, y = next(iter(data.train_dl))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert y.shape == (4, 16, 16) and y.dtype == torch.long and int(y.max()) < 3
    logits = torch.randn(4, 3, 16, 16)
    assert data.loss_func(logits, y).shape == ()


def test_segmentation_bad_layouts(tmp_path):
    root = seg_folder(tmp_path / "a")
    (root / "codes.txt").unlink()
    with pytest.raises(DataError, match="codes.txt"):
        SegmentationDataBunch.from_folder(root, device="cpu")
    root = seg_folder(tmp_path / "b")
    (root / "masks" / "im3.png").rename(root / "masks" / "other.png")
    with pytest.raises(DataError, match="im3.jpg"):
        SegmentationDataBunch.from_folder(root, device="cpu")
    with pytest.raises(DataError, match="not found"):
        SegmentationDataBunch.from_folder(tmp_path / "c", device="cpu")


@pytest.mark.parametrize("cache", ["none", "ram"])
def test_truncated_jpeg_is_skipped_the_same_way_whatever_the_cache(split_folder, cache):
    """A truncated JPEG (header intact) is found at scan time and skipped, with or without the RAM
    cache (it used to stop training with cache="none"), and every batch then loads."""
    bad = split_folder / "train" / "cat" / "0.png"
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buf, format="JPEG")
    bad.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header intact, body cut
    with pytest.warns(SkippedImagesWarning, match="skipped 1 of"):
        data = ImageDataBunch.from_folder(
            split_folder, size=8, bs=18, device="cpu", cache=cache, num_workers=0
        )
    assert bad not in data.train_ds.paths
    assert sum(len(x) for x, _ in data.train_dl) == len(data.train_ds)
