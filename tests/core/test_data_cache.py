"""The data path: with the RAM cache no epoch decodes an image; without it every epoch does; the
loader workers follow the cache (none when the images are in RAM, persistent otherwise)."""

from __future__ import annotations

import pytest
from PIL import ImageFile
from torch import nn

from learnkit import ImageDataBunch, Learner
from learnkit.data.folder import auto_workers
from tests.cli.conftest import make_image_folder

N_IMAGES = 2 * (12 + 6)  # make_image_folder: two classes, 12 train + 6 valid each


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("colours"))


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Every decode of an image file's pixels appends to this list: by torchvision (a plain JPEG or
    PNG, ``images._decode_plain``) or by Pillow (anything else).

    PIL decodes in ``ImageFile.load`` while the image still has ``tile``s to read; later calls
    (``convert``, ``exif_transpose``) find none and return at once, so they do not count.
    """
    from learnkit.data import images

    calls: list = []
    original = ImageFile.ImageFile.load
    decode_plain = images._decode_plain

    def counting_load(self, *args, **kwargs):
        if self.tile:
            calls.append(getattr(self, "filename", None))
        return original(self, *args, **kwargs)

    def counting_decode(data, fmt):
        x = decode_plain(data, fmt)
        if x is not None:
            calls.append(fmt)
        return x

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    monkeypatch.setattr(images, "_decode_plain", counting_decode)
    return calls


def _fit(data, epochs: int = 2) -> Learner:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    learn = Learner(data, model.append(nn.Linear(4, data.c)))
    learn.fit(epochs, 1e-2)
    return learn


def test_with_the_ram_cache_no_epoch_decodes(folder, decodes):
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, cache="ram", device="cpu")
    assert data.train_ds.cached and data.valid_ds.cached
    assert len(decodes) == N_IMAGES  # each image decoded once, while the data set is built
    _fit(data, epochs=2)
    assert len(decodes) == N_IMAGES  # training and validating decoded nothing more


def test_without_the_cache_every_epoch_decodes(folder, decodes):
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, cache="none", num_workers=0, device="cpu")
    assert not data.train_ds.cached
    built = len(decodes)
    _fit(data, epochs=2)
    n_train = len(data.train_dl) * data.train_dl.batch_size  # the partial batch is dropped
    assert len(decodes) - built == 2 * (n_train + len(data.valid_ds))


def test_auto_cache_decodes_into_ram_under_the_budget(folder):
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, device="cpu")
    assert data.train_ds.cache == "ram"


@pytest.mark.parametrize(("cache", "workers"), [("ram", 0), ("none", None)])
def test_workers_follow_the_cache(folder, cache, workers):
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, cache=cache, num_workers=None, device="cpu")
    n = data.train_dl.dl.num_workers
    assert n == (auto_workers(False) if workers is None else workers)
    assert data.train_dl.dl.persistent_workers == (n > 0)


def test_from_folder_picks_workers_as_the_command_line_does(folder):
    data = ImageDataBunch.from_folder(folder, size=16, bs=8, cache="none", device="cpu")
    assert data.train_dl.dl.num_workers == auto_workers(False)


def test_auto_workers():
    assert auto_workers(True) == 0
    assert 0 <= auto_workers(False) <= 4
