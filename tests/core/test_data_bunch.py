"""DeviceDataLoader positions (set_epoch, skip without loading, auto-advance) and DataBunch."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from learnkit.data import Augment, DataBunch, DatasetType, DeviceDataLoader, EpochSampler, Normalize


class CountingDataset(Dataset):
    """Item i is (i as a 1-element float tensor, i % 3); counts the items actually loaded."""

    def __init__(self, n: int) -> None:
        self.n, self.loaded = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        self.loaded.append(i)
        return torch.tensor([float(i)]), torch.tensor(i % 3)


def epoch_loader(n=50, bs=8, seed=0, drop_last=False, tfms=()):
    ds = CountingDataset(n)
    dl = DataLoader(ds, batch_size=bs, sampler=EpochSampler(n, seed=seed), drop_last=drop_last)
    return DeviceDataLoader(dl, "cpu", tfms), ds


def batches(ddl) -> list[list[int]]:
    return [x.flatten().long().tolist() for x, _ in ddl]


@pytest.mark.parametrize("drop_last", [False, True])
def test_start_batch_gives_the_tail_and_loads_nothing_skipped(drop_last):
    ddl, ds = epoch_loader(drop_last=drop_last)
    ddl.set_epoch(4)
    full = batches(ddl)
    ddl.set_epoch(4, start_batch=3)
    assert len(ddl) == len(full) - 3
    ds.loaded.clear()
    tail = batches(ddl)
    assert tail == full[3:]
    assert sorted(ds.loaded) == sorted(i for b in full[3:] for i in b)  # skipped items never loaded


def test_epoch_order_is_the_same_whatever_came_before():
    a, _ = epoch_loader(seed=5)
    b, _ = epoch_loader(seed=5)
    for e in (0, 1, 2):
        b.set_epoch(e)
        batches(b)
    a.set_epoch(3)
    b.set_epoch(3)
    assert batches(a) == batches(b)


def test_a_full_pass_moves_to_the_next_epoch():
    ddl, _ = epoch_loader()
    first, second = batches(ddl), batches(ddl)
    assert first != second
    assert (ddl.epoch, ddl.start_batch) == (2, 0)
    ddl.set_epoch(1)
    assert batches(ddl) == second


def test_a_pass_stopped_early_keeps_the_position():
    ddl, _ = epoch_loader()
    ddl.set_epoch(2, start_batch=1)
    next(iter(ddl))
    assert (ddl.epoch, ddl.start_batch) == (2, 1)


def test_plain_dataloader_skip_fallback():
    ds = CountingDataset(30)
    ddl = DeviceDataLoader(DataLoader(ds, batch_size=4), "cpu")
    full = batches(ddl)
    ddl.set_epoch(1, start_batch=5)
    assert len(ddl) == len(full) - 5
    ds.loaded.clear()
    assert batches(ddl) == full[5:]
    assert len(ds.loaded) == sum(map(len, full[5:]))


def test_transforms_run_in_order_on_the_device_batch():
    calls = []

    def add_one(x, y):
        calls.append("add")
        return x + 1, y

    def double(x, y):
        calls.append("double")
        return x * 2, y

    ddl, _ = epoch_loader(n=4, bs=4, tfms=[add_one, double])
    ddl.set_epoch(0)
    (x, y), *_ = list(ddl)
    assert calls == ["add", "double"]
    assert sorted(x.flatten().tolist()) == [2.0, 4.0, 6.0, 8.0]
    assert x.device.type == "cpu" and y.dtype == torch.long


def test_augmentation_is_seeded_by_epoch_and_batch_through_the_loader():
    images = torch.rand(16, 3, 8, 8)

    def loader():
        ds = TensorDataset(images, torch.zeros(16, dtype=torch.long))
        dl = DataLoader(ds, batch_size=4, sampler=EpochSampler(16, seed=1))
        return DeviceDataLoader(dl, "cpu", [Augment(seed=2)])

    a, b = loader(), loader()
    a.set_epoch(3)
    full = [x for x, _ in a]
    b.set_epoch(3, start_batch=2)
    tail = [x for x, _ in b]
    assert len(tail) == 2 and all(torch.equal(u, v) for u, v in zip(full[2:], tail))


def make_bunch(**kw) -> DataBunch:
    train = TensorDataset(torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8), torch.arange(20) % 2)
    valid = TensorDataset(torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8), torch.arange(6) % 2)
    train_dl = DeviceDataLoader(
        DataLoader(train, batch_size=4, sampler=EpochSampler(20)), "cpu", [Normalize(), Augment(seed=0)]
    )
    return DataBunch(train_dl, DataLoader(valid, batch_size=4), classes=["a", "b"], device="cpu", **kw)


def test_databunch_wraps_and_derives_loaders():
    data = make_bunch(size=8)
    assert isinstance(data.valid_dl, DeviceDataLoader)
    assert data.c == 2 and data.task == "classification" and not data.empty_val
    assert len(data.train_ds) == 20 and len(data.valid_ds) == 6
    assert data.dl(DatasetType.Test) is None and data.test_dl is None
    fix = data.dl(DatasetType.Fix)
    assert fix.batch_size == 4
    assert [type(t) for t in fix.tfms] == [Normalize]  # augmentation dropped
    xs = torch.cat([x for x, _ in fix])
    ref = torch.stack([data.train_ds[i][0] for i in range(20)]).float() / 255
    assert torch.equal(xs, ref)  # in order, unaugmented
    single = data.dl(DatasetType.Single)
    assert single.batch_size == 1 and len(single) == 6
    assert data.dl(DatasetType.Train) is data.train_dl and data.dl() is data.valid_dl
    assert data.to("cpu") is data and data.valid_dl.device == torch.device("cpu")


def test_default_losses():
    assert isinstance(make_bunch().loss_func, nn.CrossEntropyLoss)
    seg = make_bunch(task="segmentation")
    logits = torch.randn(2, 3, 5, 5, requires_grad=True)
    masks = torch.randint(0, 3, (2, 5, 5))
    loss = seg.loss_func(logits, masks)
    assert loss.shape == () and torch.isclose(loss, nn.functional.cross_entropy(logits, masks))
    assert make_bunch(task="custom").loss_func is None
    with pytest.raises(ValueError):
        make_bunch(task="detection")


def test_one_batch_keeps_the_position():
    data = make_bunch()
    data.train_dl.set_epoch(2, start_batch=1)
    x, y = data.one_batch()
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
    assert (data.train_dl.epoch, data.train_dl.start_batch) == (2, 1)


def test_for_inference_has_no_data():
    stats = {"mean": [0.5] * 3, "std": [0.25] * 3}
    data = DataBunch.for_inference(["x", "y", "z"], 32, stats, "classification", device="cpu")
    assert data.c == 3 and data.size == 32 and data.norm_stats == stats
    for t in DatasetType:
        assert data.dl(t) is None
    assert data.empty_val and data.train_ds is None
