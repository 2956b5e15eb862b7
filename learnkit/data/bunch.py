"""``DataBunch``: the train/valid(/test) loaders of a run, with what a model needs to know of them.

A bunch also remembers how its images were prepared (``size``, ``norm_stats``, ``task``), which
is what a checkpoint records and what ``DataBunch.for_inference`` rebuilds without any training
data. Loaders derived from the training and validation sets (``fix_dl``, ``single_dl``) are made
on first use, from the same data set, collate function and workers, minus augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from learnkit.data.loader import DeviceDataLoader

TASKS = ("classification", "segmentation", "custom")

__all__ = ["DataBunch", "DatasetType", "DeviceDataLoader", "default_device"]


class DatasetType(Enum):
    """Which of a bunch's loaders: ``Fix`` is the train set in order without augmentation,
    ``Single`` the valid set one item at a time."""

    Train = 1
    Valid = 2
    Test = 3
    Single = 4
    Fix = 5


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _wrap(dl, device: torch.device) -> DeviceDataLoader | None:
    if dl is None or isinstance(dl, DeviceDataLoader):
        if dl is not None:
            dl.device = device
        return dl
    return DeviceDataLoader(dl, device)


def _derived(ddl: DeviceDataLoader | None, batch_size: int | None) -> DeviceDataLoader | None:
    """``ddl``'s data in order, with ``batch_size``, without its train-only transforms."""
    if ddl is None or isinstance(ddl.dataset, IterableDataset):
        return None
    src = ddl.dl
    dl = DataLoader(
        src.dataset,
        batch_size=batch_size or 1,
        shuffle=False,
        num_workers=src.num_workers,
        collate_fn=src.collate_fn,
        pin_memory=src.pin_memory,
        worker_init_fn=src.worker_init_fn,
        multiprocessing_context=src.multiprocessing_context,
        persistent_workers=src.persistent_workers,
    )
    return DeviceDataLoader(dl, ddl.device, [t for t in ddl.tfms if not getattr(t, "train_only", False)])


class DataBunch:
    """Train, valid and optional test loaders on one device, plus the classes and image settings.

    Args:
        train_dl, valid_dl, test_dl: torch ``DataLoader``s (wrapped in ``DeviceDataLoader``) or
            ``DeviceDataLoader``s; ``None`` for a set that is missing (``for_inference`` has none).
        classes: the class names (``c`` is their count).
        device: where batches go (default: CUDA when available, else the CPU).
        norm_stats: ``{"mean": [...], "std": [...]}`` used to normalise, recorded in checkpoints.
        size: the side length images are resized to.
        task: ``"classification"``, ``"segmentation"`` or ``"custom"``.
        loss_func: the default loss for a ``Learner`` on this data; if not given, cross-entropy
            for classification (logits ``N x C``, targets ``N``) and segmentation (logits
            ``N x C x H x W``, masks ``N x H x W``), none for ``"custom"``; BCE-with-logits
            with ``multi_label``.
        multi_label: each item has any number of classes (multi-hot float targets ``N x C``;
            sigmoid outputs).

    Example:
        >>> train_dl = DataLoader(train_ds, 64, shuffle=True)  # doctest: +SKIP
        >>> data = DataBunch(train_dl, DataLoader(valid_ds, 64))  # doctest: +SKIP
        >>> xb, yb = data.one_batch()  # doctest: +SKIP
    """

    def __init__(
        self,
        train_dl,
        valid_dl,
        test_dl=None,
        classes: Sequence[str] | None = None,
        device: torch.device | str | None = None,
        *,
        norm_stats: dict | None = None,
        size: int | None = None,
        task: str = "classification",
        loss_func: nn.Module | None = None,
        multi_label: bool = False,
        valid_split: dict | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
        if device is None:
            device = train_dl.device if isinstance(train_dl, DeviceDataLoader) else default_device()
        self.device = torch.device(device)
        self.train_dl = _wrap(train_dl, self.device)
        self.valid_dl = _wrap(valid_dl, self.device)
        self.test_dl = _wrap(test_dl, self.device)
        self.classes = None if classes is None else list(classes)
        # how the validation set was made, recorded in checkpoints so evaluation can repeat it:
        # {"kind": "folder", "name": "valid"} or {"kind": "pct", "valid_pct": 0.2, "seed": 7}
        self.valid_split = valid_split
        self.data_root: Path | None = None  # the DATA folder, when the bunch was read from one
        self.changed_since_fit: list[str] = []  # set by evaluation: how the data differs from the fit's
        self.norm_stats = norm_stats
        self.size = size
        self.task = task
        self.multi_label = bool(multi_label)
        self.thresh = 0.5  # multi-label: a class is predicted when its probability is above this
        if loss_func is None and task != "custom":
            loss_func = nn.BCEWithLogitsLoss() if self.multi_label else nn.CrossEntropyLoss()
        self.loss_func = loss_func
        self._fix_dl = self._single_dl = None

    @classmethod
    def for_inference(
        cls,
        classes: Sequence[str] | None,
        size: int | None,
        norm_stats: dict | None,
        task: str = "classification",
        device: torch.device | str | None = None,
        multi_label: bool = False,
    ) -> DataBunch:
        """A bunch with no data, for a learner rebuilt from a checkpoint (``dl()`` answers ``None``).

        Add images to predict on with ``add_test``, or turn PIL images into a batch with
        ``preprocess``.
        """
        return cls(
            None,
            None,
            classes=classes,
            device=device,
            norm_stats=norm_stats,
            size=size,
            task=task,
            multi_label=multi_label,
        )

    @classmethod
    def create(
        cls,
        train_ds,
        valid_ds,
        test_ds=None,
        path: str | Path = ".",
        bs: int = 64,
        val_bs: int | None = None,
        num_workers: int = 0,
        device: torch.device | str | None = None,
        collate_fn=None,
        classes: Sequence[str] | None = None,
        **kwargs,
    ) -> DataBunch:
        """fastai v1's ``DataBunch.create``: loaders over any torch data sets (``__len__`` and
        ``__getitem__`` giving ``(x, y)``): train shuffled with its last partial batch dropped,
        valid and test in order at ``val_bs`` (default ``bs``). ``classes`` default to
        ``train_ds.classes`` when the data set has them. The other keywords go to ``DataBunch``
        (``task``, ``loss_func``, ``size``, ``norm_stats``...)."""
        from torch.utils.data.dataloader import default_collate

        collate = collate_fn or default_collate
        val_bs = val_bs or bs
        train_dl = DataLoader(
            train_ds,
            bs,
            shuffle=True,
            drop_last=len(train_ds) >= bs,
            num_workers=num_workers,
            collate_fn=collate,
        )
        valid_dl = DataLoader(valid_ds, val_bs, shuffle=False, num_workers=num_workers, collate_fn=collate)
        test_dl = None
        if test_ds is not None:
            test_dl = DataLoader(test_ds, val_bs, shuffle=False, num_workers=num_workers, collate_fn=collate)
        if classes is None and getattr(train_ds, "classes", None) is not None:
            classes = [str(c) for c in train_ds.classes]
        bunch = cls(train_dl, valid_dl, test_dl, classes=classes, device=device, **kwargs)
        bunch.path = Path(path)
        return bunch

    @property
    def batch_size(self) -> int | None:
        """The training batch size (fastai v1's ``data.batch_size``)."""
        dl = self.train_dl or self.valid_dl
        return None if dl is None else dl.batch_size

    def normalize(self, stats=None) -> DataBunch:
        """fastai v1's ``normalize``: normalise every loader with ``stats`` (``(mean, std)``, e.g.
        ``imagenet_stats``), replacing the normalisation the bunch had; ``None``: the mean and
        std of one training batch (as v1). Returns ``self``; checkpoints record the stats."""
        from learnkit.data.augment import Normalize
        from learnkit.data.transforms import stats_dict

        if stats is None:
            x = self._raw_batch()
            dims = [d for d in range(x.dim()) if d != 1]
            stats = (x.mean(dims).tolist(), x.std(dims).tolist())
        norm_stats = stats_dict(stats)
        for ddl in (self.train_dl, self.valid_dl, self.test_dl):
            if ddl is None:
                continue
            kept = [t for t in ddl.tfms if not isinstance(t, Normalize)]
            ddl.tfms = [*kept, Normalize.from_stats(norm_stats)]
        self.norm_stats = norm_stats
        self._fix_dl = self._single_dl = None  # remade from the loaders above
        return self

    def _raw_batch(self) -> torch.Tensor:
        """The first training batch's ``x`` on the 0..1 scale, before any normalisation."""
        from learnkit.data.augment import Normalize

        ddl = self.train_dl
        saved = ddl.tfms
        ddl.tfms = [t for t in saved if not isinstance(t, Normalize) and not getattr(t, "train_only", False)]
        try:
            x = self.one_batch()[0]
        finally:
            ddl.tfms = saved
        return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()

    def show_batch(
        self,
        rows: int = 5,
        ds_type: DatasetType = DatasetType.Train,
        figsize: tuple | None = None,
        **kwargs,
    ):
        """fastai v1's ``show_batch``: ``rows x rows`` items of a batch with their labels (a
        segmentation batch: each image with its mask over it). Returns the ``Figure`` (shown by
        a notebook as the cell's value)."""
        from learnkit.data.augment import Normalize
        from learnkit.plots import new_figure

        def picture(img: torch.Tensor):  # C x H x W from the loader -> H x W x 3 in 0..1
            img = img.detach().cpu()
            if img.dtype == torch.uint8:
                img = img.float() / 255.0
            elif self.norm_stats is not None:
                img = Normalize.from_stats(self.norm_stats).denormalize(img[None].float())[0]
            img = img.float().clamp(0, 1)
            return (img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]).permute(1, 2, 0).numpy()

        x, y = self.one_batch(ds_type)
        n = min(rows * rows, len(x))
        fig, axes = new_figure(rows, rows, figsize=figsize or (2.2 * rows, 2.2 * rows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i >= n:
                continue
            ax.imshow(picture(x[i]))
            if y is None:
                continue
            yi = y[i].cpu()
            if yi.dim() == 2:  # a mask
                ax.imshow(yi.numpy(), alpha=0.5, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
            elif yi.dim() == 0 and self.classes is not None:
                ax.set_title(str(self.classes[int(yi)]), fontsize=9)
            elif yi.dim() == 1 and self.classes is not None:  # multi-hot
                ax.set_title(";".join(self.classes[j] for j in yi.nonzero().flatten().tolist()), fontsize=8)
            else:
                ax.set_title(str(yi.tolist()), fontsize=9)
        return fig

    @property
    def c(self) -> int | None:
        """The number of classes (``None`` when the bunch has no class list)."""
        return None if self.classes is None else len(self.classes)

    @property
    def train_ds(self):
        """The training data set (``None`` when there is none)."""
        return None if self.train_dl is None else self.train_dl.dataset

    @property
    def valid_ds(self):
        """The validation data set (``None`` when there is none)."""
        return None if self.valid_dl is None else self.valid_dl.dataset

    @property
    def test_ds(self):
        """The test data set (``None`` when there is none)."""
        return None if self.test_dl is None else self.test_dl.dataset

    @property
    def empty_val(self) -> bool:
        """True when there is no validation data."""
        return self.valid_dl is None or len(self.valid_dl.dataset) == 0

    @property
    def fix_dl(self) -> DeviceDataLoader | None:
        """The training data in order, without augmentation, at the training batch size."""
        if self._fix_dl is None and self.train_dl is not None:
            self._fix_dl = _derived(self.train_dl, self.train_dl.batch_size)
        return self._fix_dl

    @property
    def single_dl(self) -> DeviceDataLoader | None:
        """The validation data in order, one item per batch."""
        if self._single_dl is None and self.valid_dl is not None:
            self._single_dl = _derived(self.valid_dl, 1)
        return self._single_dl

    def dl(self, ds_type: DatasetType = DatasetType.Valid) -> DeviceDataLoader | None:
        """The loader for ``ds_type`` (``None`` when this bunch has no such data)."""
        return {
            DatasetType.Train: lambda: self.train_dl,
            DatasetType.Valid: lambda: self.valid_dl,
            DatasetType.Test: lambda: self.test_dl,
            DatasetType.Single: lambda: self.single_dl,
            DatasetType.Fix: lambda: self.fix_dl,
        }[ds_type]()

    def to(self, device: torch.device | str) -> DataBunch:
        """Send every loader's batches to ``device`` from now on; returns ``self``."""
        self.device = torch.device(device)
        for ddl in (self.train_dl, self.valid_dl, self.test_dl, self._fix_dl, self._single_dl):
            if ddl is not None:
                ddl.device = self.device
        return self

    def one_batch(self, ds_type: DatasetType = DatasetType.Train) -> tuple:
        """The first batch ``(x, y)`` of ``dl(ds_type)``, on the device (the position is kept)."""
        ddl = self.dl(ds_type)
        if ddl is None:
            raise ValueError(f"this DataBunch has no {ds_type.name} data")
        epoch, start = ddl.epoch, ddl.start_batch
        try:
            return next(iter(ddl))
        finally:
            ddl.set_epoch(epoch, start)

    def add_test(self, paths: Sequence[str | Path], bs: int | None = None, num_workers: int = 0) -> None:
        """Make ``test_dl`` from image files, prepared exactly like the validation images.

        Unreadable files are skipped with a warning (``test_ds.paths`` lists the kept ones, in
        order); none readable raises ``DataError``.
        """
        from learnkit.data.augment import Normalize
        from learnkit.data.dataset import ImageDataset

        if self.size is None:
            raise ValueError("add_test needs the bunch's image size")
        ds = ImageDataset(paths, None, self.size, cache="auto")
        bs = bs or (self.train_dl.batch_size if self.train_dl is not None else None) or 64
        dl = DataLoader(ds, batch_size=bs, shuffle=False, num_workers=num_workers)
        self.test_dl = DeviceDataLoader(dl, self.device, [Normalize.from_stats(self.norm_stats)])

    def preprocess(self, images: Sequence) -> torch.Tensor:
        """PIL images as the normalised float batch the model sees at validation time."""
        from learnkit.data.images import preprocess

        if self.size is None:
            raise ValueError("preprocess needs the bunch's image size")
        return preprocess(images, self.size, self.norm_stats, self.device)

    def __repr__(self) -> str:
        def n(ddl: DeviceDataLoader | None) -> str:
            return "-" if ddl is None else str(len(ddl.dataset))

        return (
            f"{type(self).__name__}(task={self.task}, train={n(self.train_dl)}, valid={n(self.valid_dl)}, "
            f"test={n(self.test_dl)}, c={self.c}, size={self.size}, device={self.device})"
        )
