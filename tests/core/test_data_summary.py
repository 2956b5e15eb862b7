"""What a fit says it learns from: counts per class and split, skipped images, small-set warnings."""

import warnings

from learnkit import ImageDataBunch
from learnkit.jobs.data_summary import describe_data, write_skipped
from tests.core.tiny_images import make_class_folder


def _bunch(root, bs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dataset's own "skipped" warning
        return ImageDataBunch.from_folder(root, size=16, bs=bs, augment=False, device="cpu")


def test_counts_classes_split_and_the_skipped_files(tmp_path):
    root = make_class_folder(tmp_path / "d", n_train=5, n_valid=3)
    (root / "train" / "red" / "broken.png").write_bytes(b"not a png")
    (root / "valid" / "blue" / "empty.png").write_bytes(b"")
    info = describe_data(_bunch(root, bs=4), epochs=2, schedule="fit")
    assert (info["train"], info["valid"], info["bs"], info["batches_per_epoch"]) == (
        15,
        9,
        4,
        3,
    )  # the last partial batch dropped, as fastai
    assert info["lines"][0].startswith("data: 15 train / 9 valid images, 3 classes, split: the valid/ folder")
    assert info["lines"][1] == "classes (train/valid images): blue 5/3, green 5/3, red 5/3"
    assert sorted(p.rsplit("/", 1)[1] for p, _ in info["skipped"]) == ["broken.png", "empty.png"]
    listed = write_skipped(info["skipped"], tmp_path / "run")
    assert len(listed.read_text().splitlines()) == 2 and "broken.png\t" in listed.read_text()
    assert info["warnings"] == []  # a constant-rate fit of 4 steps an epoch is not warned about


def test_warnings_for_a_set_under_one_batch_and_a_short_cycle(tmp_path):
    root = make_class_folder(tmp_path / "d", n_train=2, n_valid=1)
    small = describe_data(_bunch(root, bs=64), epochs=1, schedule="one_cycle")
    assert len(small["warnings"]) == 1 and "smaller than one batch (--bs 64)" in small["warnings"][0]
    short = describe_data(_bunch(root, bs=2), epochs=3, schedule="one_cycle")
    assert len(short["warnings"]) == 1 and short["warnings"][0].startswith("3 steps an epoch (9 in the whole")
    assert write_skipped([], tmp_path / "none") is None and not (tmp_path / "none").exists()
