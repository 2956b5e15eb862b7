"""``ImageDataBunch.from_folder``: a classification data set from folders of images.

Layouts: ``DATA/train/<class>/*`` with ``DATA/valid/<class>/*``, or, with ``valid_pct``,
``DATA/<class>/*`` (or ``DATA/train/<class>/*`` alone) split at random by ``seed``. Images are
found by extension (``IMAGE_EXTENSIONS``, any depth inside a class folder, hidden files ignored);
a class is a folder holding at least one image (a learnkit run folder never is). Unreadable
images are skipped by the rule of ``learnkit.data.dataset``.

The helpers here (listing, splitting, building the loaders) are shared with segmentation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from learnkit.class_names import check_class_names
from learnkit.data.augment import IMAGENET_STATS, PRESETS, Augment, AugmentSettings, Normalize
from learnkit.data.bunch import DataBunch, default_device
from learnkit.data.checks import check_enough_classes, check_split
from learnkit.data.dataset import ImageDataset, resolve_cache
from learnkit.data.images import IMAGE_EXTENSIONS
from learnkit.data.loader import DeviceDataLoader
from learnkit.data.sampler import EpochSampler, mix_seed
from learnkit.errors import DataError, UsageError

_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))


def _augment(augment: bool | AugmentSettings, ds_tfms: Any) -> bool | AugmentSettings:
    """``augment``, unless fastai v1's ``ds_tfms`` (``get_transforms()``) is given."""
    if ds_tfms is None:
        return augment
    from learnkit.data.transforms import settings_from_ds_tfms

    return settings_from_ds_tfms(ds_tfms)


def list_images(folder: str | Path) -> list[str]:
    """Image files under ``folder`` as path strings (any depth, symlinked folders not followed, as
    ``rglob``), sorted as ``sorted(Path(...))`` would (part by part), hidden ones (or in hidden
    folders) left out. Read with ``os.scandir`` (a file's type comes with its name) and kept as
    strings: no ``Path`` is built per file (``Path(p)`` where one is needed)."""
    found: list[str] = []
    stack = [os.fspath(Path(folder))]  # normalised once ("./a//b/" -> "a/b")
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = list(it)
        except OSError:
            continue
        for entry in entries:
            name = entry.name
            if name[0] == ".":
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif name.lower().endswith(_SUFFIXES) and entry.is_file():  # a symlinked file counts
                    found.append(entry.path)
            except OSError:
                continue
    found.sort(key=_part_order)
    return found


def _part_order(path: str) -> str:
    """Sort key giving ``sorted(Path(...))``'s order (part by part): separators as NUL."""
    if os.altsep:
        path = path.replace(os.altsep, "\0")
    return path.replace(os.sep, "\0")


def require_dir(path: Path, what: str = "data folder") -> Path:
    """``path`` if it is a folder, else ``DataError``."""
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if not path.is_dir():
        raise DataError(f"{what} is not a folder: {path}")
    return path


def split_by_pct(n: int, valid_pct: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``0 .. n-1`` split at random (fixed by ``seed``) into ``(train, valid)``."""
    if not 0.0 < valid_pct < 1.0:
        raise UsageError(f"valid_pct must be between 0 and 1 (exclusive), got {valid_pct}")
    gen = torch.Generator()
    gen.manual_seed(seed)
    order = torch.randperm(n, generator=gen).tolist()
    n_valid = max(1, round(n * valid_pct)) if n > 1 else 0
    return sorted(order[n_valid:]), sorted(order[:n_valid])


def split_record(valid: str, valid_pct: float | None, seed: int) -> dict:
    """How a validation set was made, as checkpoints record it (metadata key ``valid_split``)."""
    if valid_pct is None:
        return {"kind": "folder", "name": valid}
    return {"kind": "pct", "valid_pct": float(valid_pct), "seed": int(seed)}


def pick_norm_stats(normalize: bool, norm_stats: dict | None) -> dict | None:
    """The statistics to normalise with: ``norm_stats`` if given, else ImageNet's or none."""
    if norm_stats is not None:
        if set(norm_stats) != {"mean", "std"} or len(norm_stats["mean"]) != 3 or len(norm_stats["std"]) != 3:
            raise UsageError(f"norm_stats must be {{'mean': [3 numbers], 'std': [3 numbers]}}: {norm_stats}")
        return {"mean": [float(v) for v in norm_stats["mean"]], "std": [float(v) for v in norm_stats["std"]]}
    return {k: list(v) for k, v in IMAGENET_STATS.items()} if normalize else None


def dist_info(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """``(rank, world_size)``: as given, else from an initialised ``torch.distributed`` group."""
    if rank is not None and world_size is not None:
        return rank, world_size
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_loaders(
    train_ds: ImageDataset,
    valid_ds: ImageDataset,
    *,
    bs: int,
    seed: int,
    num_workers: int | None,
    augment: bool | AugmentSettings,
    norm_stats: dict | None,
    device: torch.device,
    masks: bool,
    rank: int,
    world_size: int,
) -> tuple[DeviceDataLoader, DeviceDataLoader]:
    """The train and valid ``DeviceDataLoader``s of a folder bunch.

    Train: an ``EpochSampler`` (seeded, sharded over ranks, padded), the last partial batch
    dropped when there is a full one, ``Augment`` (``augment``: settings, ``True`` for the
    ``light`` preset, ``False`` for none) then ``Normalize`` on the device. Valid: in order,
    sharded without padding, ``Normalize`` only. ``num_workers=None`` picks :func:`auto_workers`;
    workers, once started, stay for the whole run (``persistent_workers``).
    """
    if bs < 1:
        raise UsageError(f"batch size must be >= 1, got {bs}")
    if num_workers is None:
        num_workers = auto_workers(train_ds.cached)
    loader_kw = dict(
        num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=num_workers > 0
    )
    train_sampler = EpochSampler(len(train_ds), shuffle=True, seed=seed, rank=rank, world_size=world_size)
    train_dl = DataLoader(
        train_ds,
        batch_size=bs,
        sampler=train_sampler,
        drop_last=len(train_sampler) >= bs,
        generator=_loader_generator(seed, rank, 0),
        **loader_kw,
    )
    valid_sampler = EpochSampler(len(valid_ds), shuffle=False, rank=rank, world_size=world_size, pad=False)
    valid_gen = _loader_generator(seed, rank, 1)
    valid_dl = DataLoader(valid_ds, batch_size=bs, sampler=valid_sampler, generator=valid_gen, **loader_kw)
    settings = augment_settings(augment)
    train_tfms = [Normalize.from_stats(norm_stats)]
    if not settings.is_identity:  # on 0..1 images (lighting needs them), then normalised
        train_tfms.insert(0, Augment(seed=seed, masks=masks, rank=rank, settings=settings))
    return (
        DeviceDataLoader(train_dl, device, train_tfms),
        DeviceDataLoader(valid_dl, device, [Normalize.from_stats(norm_stats)]),
    )


def augment_settings(augment: bool | AugmentSettings) -> AugmentSettings:
    """Settings from ``augment``: as given, ``True``: the ``light`` preset, ``False``: none."""
    if isinstance(augment, AugmentSettings):
        return augment
    return PRESETS["light"] if augment else PRESETS["none"]


def auto_workers(cached: bool) -> int:
    """Loader worker processes when none are asked for (``num_workers=None``, the CLI's default).

    None when the decoded images are in RAM: a batch is then a copy, which worker processes would
    only slow down by passing it between processes. Otherwise up to 4 decode ahead, leaving one
    core to the training process.
    """
    if cached:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(4, cores - 1))


def _loader_generator(seed: int, rank: int, which: int) -> torch.Generator:
    """A loader's own generator. Without one, every pass over a DataLoader draws its workers' base
    seed from the global torch RNG, so a run resumed mid-epoch (one extra pass) would see other
    dropout masks than the run it continues. Workers are seeded from it (python, numpy, torch)."""
    gen = torch.Generator()
    gen.manual_seed(mix_seed(seed, rank, which))
    return gen


def _class_folders(
    src: Path, classes: Sequence[str] | None, *, allow_empty: bool = False
) -> dict[str, list[str]]:
    """``{class name: its images}`` for the class folders of ``src`` that hold images
    (``allow_empty``: ``{}`` rather than an error when there are none, for a validation folder)."""
    subdirs = sorted(
        p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".") and not is_run_folder(p)
    )
    if not subdirs and not allow_empty:
        raise DataError(f"no class folders in {src} (expected {src}/<class>/<image files>)")
    found = {d.name: list_images(d) for d in subdirs}
    found = {name: files for name, files in found.items() if files}
    check_class_names(sorted(found), str(src))
    if not found and not allow_empty:
        raise DataError(f"no images in the class folders of {src} (expected {src}/<class>/<image files>)")
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataError(f"class folder '{unknown[0]}' in {src} is not one of the classes {list(classes)}")
    return found


def is_run_folder(folder: Path) -> bool:
    """True for a learnkit run folder (its lock file, or checkpoints in ``models/``): never a class,
    though its ``plots/`` hold images."""
    if os.path.lexists(folder / ".learnkit.lock"):
        return True
    models = folder / "models"
    return models.is_dir() and any(models.glob("*.safetensors"))


def _items(found: dict[str, list[str]], classes: list[str]) -> tuple[list[str], list[int]]:
    index = {name: i for i, name in enumerate(classes)}
    paths = [p for name in sorted(found) for p in found[name]]
    labels = [index[name] for name in sorted(found) for _ in found[name]]
    return paths, labels


class ImageDataBunch(DataBunch):
    """A ``DataBunch`` of labelled images; build one with ``from_folder``."""

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = 0,
        size: int = 64,
        bs: int = 64,
        num_workers: int | None = None,
        augment: bool | AugmentSettings = False,
        cache: str = "auto",
        device: torch.device | str | None = None,
        normalize: bool = True,
        classes: Sequence[str] | None = None,
        *,
        ds_tfms: Any = None,
        test: str | None = None,
        norm_stats: dict | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> ImageDataBunch:
        """Images from ``path/train/<class>/*`` and ``path/valid/<class>/*`` (see the module doc).

        Args:
            path: the data folder.
            train, valid: its subfolder names.
            valid_pct: split ``path/<class>/*`` (or ``path/train/<class>/*``) instead, this share
                going to validation, drawn with ``seed``.
            seed: seeds the split, the shuffling (per epoch) and the augmentation (per batch);
                ``None`` means 0.
            size: images are resized to ``size x size``.
            bs: batch size (per process).
            num_workers: loader worker processes (``0``: load in this process; with the RAM
                cache no decoding happens while training, so workers are rarely needed);
                ``None`` (the default, as the command line): :func:`auto_workers` (none with
                the RAM cache, else up to 4, kept between epochs).
            augment: train-time augmentation: settings (``AugmentConfig("fastai").settings()``),
                ``True`` for the ``light`` preset (flip and small zoom), ``False`` (the default,
                as fastai v1's ``ds_tfms=None``) for none.
            ds_tfms: fastai v1's: ``get_transforms(...)`` (its settings override ``augment``).
            test: a folder of unlabelled images under ``path`` for ``test_dl`` (v1's ``test``).
            cache: ``"auto"``, ``"ram"`` or ``"none"``: keep decoded images in RAM.
            device: where batches go (default: CUDA when available, else the CPU).
            normalize: normalise with ImageNet statistics (recorded in ``norm_stats``); else
                only rescale to 0..1.
            norm_stats: normalise with these ``{"mean": [...], "std": [...]}`` instead (e.g. a
                checkpoint's); overrides ``normalize``.
            classes: the class names in label order (e.g. a checkpoint's); default: the sorted
                class folder names.
            rank, world_size: this process's shard; default: from ``torch.distributed`` when it is
                initialised, else the whole data set.

        Raises:
            DataError: a missing folder, no class folders, no images.

        Example:
            >>> data = ImageDataBunch.from_folder("data/pets", size=128, bs=32)  # doctest: +SKIP
            >>> data.classes, data.c  # doctest: +SKIP
        """
        path = require_dir(Path(path).expanduser())
        if classes is not None:
            check_class_names([*classes], "the classes given")
        dev = torch.device(device) if device is not None else default_device()
        seed = 0 if seed is None else seed
        norm_stats = pick_norm_stats(normalize, norm_stats)
        augment = _augment(augment, ds_tfms)
        if valid_pct is None:
            if not (path / train).is_dir():
                raise DataError(
                    f"no '{train}' folder in {path} (expected {path}/{train}/<class>/*; "
                    f"or give valid_pct (--valid-pct) to split {path}/<class>/*)"
                )
            found_train = _class_folders(path / train, classes)
            valid_dir = require_dir(path / valid, f"'{valid}' folder")
            if classes is None:
                check_enough_classes(path / train, sorted(found_train), split=False)
            found_valid = _class_folders(valid_dir, None, allow_empty=True)
            names = list(classes) if classes is not None else sorted(found_train)
            missing = sorted(set(found_valid) - set(names))
            if missing:
                bad = missing[0]
                what = "is empty" if (path / train / bad).is_dir() else "does not exist"
                raise DataError(
                    f"validation class '{bad}' is unknown to training ({path / train / bad} {what}): "
                    f"add training images there, or remove {path / valid / bad}"
                )
            train_paths, train_labels = _items(found_train, names)
            valid_paths, valid_labels = _items(found_valid, names)
            check_split(
                names if classes is None else [],
                train_labels,
                valid_labels,
                train_dir=path / train,
                valid_what=str(path / valid),
            )
        else:
            if (path / train).is_dir() and (path / valid).is_dir():
                raise DataError(f"{path} already has '{train}' and '{valid}' folders; leave out valid_pct")
            src = path / train if (path / train).is_dir() else path
            found = _class_folders(src, classes)
            if classes is None:
                check_enough_classes(src, sorted(found), split=True)
            names = list(classes) if classes is not None else sorted(found)
            paths, labels = _items(found, names)
            train_idx, valid_idx = split_by_pct(len(paths), valid_pct, seed)
            if not valid_idx:
                raise DataError(f"too few images in {src} to split off a validation set")
            train_paths, train_labels = [paths[i] for i in train_idx], [labels[i] for i in train_idx]
            valid_paths, valid_labels = [paths[i] for i in valid_idx], [labels[i] for i in valid_idx]
            check_split(
                names if classes is None else [],
                train_labels,
                valid_labels,
                train_dir=src,
                valid_what=f"--valid-pct {valid_pct:g}, seed {seed}",
                split=True,
            )
        n_images = len(train_paths) + len(valid_paths)
        mode = resolve_cache(cache, 3 * size * size * n_images, what=f"{n_images:,} images at {size} px")
        train_ds = ImageDataset(train_paths, train_labels, size, cache=mode)
        valid_ds = ImageDataset(valid_paths, valid_labels, size, cache=mode)
        bunch = cls._classifier(
            train_ds, valid_ds, names, size=size, bs=bs, seed=seed, num_workers=num_workers, augment=augment,
            norm_stats=norm_stats, device=dev, rank=rank, world_size=world_size,
            valid_split=split_record(valid, valid_pct, seed),
        )  # fmt: skip
        bunch.data_root = path  # file names in the data fingerprint are relative to it
        bunch.path = path
        if test is not None:
            bunch.add_test(
                list_images(require_dir(path / test, f"'{test}' folder")), num_workers=num_workers or 0
            )
        return bunch

    @classmethod
    def _classifier(
        cls,
        train_ds: ImageDataset,
        valid_ds: ImageDataset,
        names: list[str],
        *,
        size: int,
        norm_stats: dict | None,
        device: torch.device,
        rank: int | None,
        world_size: int | None,
        valid_split: dict,
        multi_label: bool = False,
        **loader: Any,
    ) -> ImageDataBunch:
        """The bunch over a classifier's two data sets; ``loader`` (bs, seed, num_workers, augment)
        goes to :func:`build_loaders`."""
        rank, world_size = dist_info(rank, world_size)
        train_dl, valid_dl = build_loaders(
            train_ds, valid_ds, norm_stats=norm_stats, device=device, masks=False, rank=rank,
            world_size=world_size, **loader,
        )  # fmt: skip
        return cls(
            train_dl, valid_dl, classes=names, device=device, norm_stats=norm_stats, size=size,
            task="classification", multi_label=multi_label, valid_split=valid_split,
        )  # fmt: skip

    @classmethod
    def from_lists(
        cls, path: str | Path, fnames: Sequence[str | Path], labels: Sequence[Any], valid_pct: float = 0.2,
        seed: int | None = None, classes: Sequence[str] | None = None, **kwargs: Any,
    ) -> ImageDataBunch:  # fmt: skip
        """fastai v1's ``from_lists``: images ``fnames`` (under ``path`` unless absolute) labelled
        ``labels``, split at random (``valid_pct``, v1's 0.2; ``seed``, ``None`` meaning 0);
        ``size``, ``bs``, ``ds_tfms``, ``num_workers``... as :meth:`from_folder`; ``label_delim``
        splits each label into several (multi-label, as :meth:`from_csv`)."""
        return cls._from_lists(
            path, fnames, labels, valid_pct, seed, classes, where="the labels given to from_lists", **kwargs
        )

    @classmethod
    def _from_lists(
        cls, path: str | Path, fnames: Sequence[str | Path], labels: Sequence[Any], valid_pct: float = 0.2,
        seed: int | None = None, classes: Sequence[str] | None = None, *, size: int = 64, bs: int = 64,
        num_workers: int | None = 0, ds_tfms: Any = None, augment: bool | AugmentSettings = False,
        cache: str = "auto", device: torch.device | str | None = None, normalize: bool = True,
        norm_stats: dict | None = None, label_delim: str | None = None, where: str = "the labels given",
    ) -> ImageDataBunch:  # fmt: skip
        from learnkit.data.lists import encode_labels

        path = Path(path).expanduser()
        files, ys, names = encode_labels(path, fnames, labels, classes, label_delim, where)
        seed = 0 if seed is None else seed
        train_idx, valid_idx = split_by_pct(len(files), valid_pct, seed)
        if not train_idx or not valid_idx:
            raise DataError(f"too few images ({len(files)}) to split off a validation set")
        mode = resolve_cache(cache, 3 * size * size * len(files))
        n_classes = len(names) if label_delim is not None else None

        def dataset(idx: list[int]) -> ImageDataset:
            return ImageDataset(
                [files[i] for i in idx], [ys[i] for i in idx], size, cache=mode, n_classes=n_classes
            )

        bunch = cls._classifier(
            dataset(train_idx), dataset(valid_idx), names, size=size, bs=bs, seed=seed,
            num_workers=num_workers, augment=_augment(augment, ds_tfms),
            norm_stats=pick_norm_stats(normalize, norm_stats),
            device=torch.device(device) if device is not None else default_device(), rank=None,
            world_size=None, multi_label=label_delim is not None,
            valid_split=split_record("", valid_pct, seed),
        )  # fmt: skip
        bunch.path = path
        return bunch

    @classmethod
    def from_name_func(
        cls, path: str | Path, fnames: Sequence[str | Path], label_func: Any, valid_pct: float = 0.2,
        seed: int | None = None, **kwargs: Any,
    ) -> ImageDataBunch:  # fmt: skip
        """fastai v1's ``from_name_func``: each file labelled ``label_func(file)``."""
        from learnkit.data.lists import labels_from_func

        labels = labels_from_func(fnames, label_func)
        return cls._from_lists(
            path, fnames, labels, valid_pct, seed, where="the labels label_func gave", **kwargs
        )

    @classmethod
    def from_name_re(
        cls, path: str | Path, fnames: Sequence[str | Path], pat: Any, valid_pct: float = 0.2,
        seed: int | None = None, **kwargs: Any,
    ) -> ImageDataBunch:  # fmt: skip
        """fastai v1's ``from_name_re``: each file labelled by the first group of ``pat`` in its path."""
        from learnkit.data.lists import labels_from_re

        pattern = pat if isinstance(pat, str) else getattr(pat, "pattern", pat)
        labels = labels_from_re(fnames, pat)
        return cls._from_lists(
            path, fnames, labels, valid_pct, seed, where=f"the labels {pattern!r} matched", **kwargs
        )

    @classmethod
    def from_df(
        cls, path: str | Path, df: Any, folder: str | None = None, label_delim: str | None = None,
        valid_pct: float = 0.2, seed: int | None = None, fn_col: int | str = 0, label_col: int | str = 1,
        suffix: str = "", **kwargs: Any,
    ) -> ImageDataBunch:  # fmt: skip
        """fastai v1's ``from_df``: file names and labels from a pandas DataFrame's columns."""
        from learnkit.data.lists import lists_from_df

        fnames, labels = lists_from_df(df, folder, fn_col, label_col, suffix)
        return cls._from_lists(
            path, fnames, labels, valid_pct, seed, label_delim=label_delim,
            where=f"the DataFrame's label column {label_col!r}", **kwargs,
        )  # fmt: skip

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        csv_labels: str = "labels.csv",
        valid_pct: float | None = None,
        label_delim: str | None = None,
        seed: int | None = 0,
        size: int = 64,
        bs: int = 64,
        num_workers: int | None = None,
        augment: bool | AugmentSettings = False,
        cache: str = "auto",
        device: torch.device | str | None = None,
        normalize: bool = True,
        classes: Sequence[str] | None = None,
        *,
        ds_tfms: Any = None,
        test: str | None = None,
        norm_stats: dict | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> ImageDataBunch:
        """Images listed in ``path/csv_labels`` (fastai v1's ``from_csv``; see
        :mod:`learnkit.data.csv_labels`). ``label_delim`` makes it multi-label (multi-hot targets,
        BCE-with-logits loss). The split is the CSV's ``is_valid`` column, else ``valid_pct``
        drawn with ``seed``. The other arguments are those of :meth:`from_folder`.

        Example:
            >>> data = ImageDataBunch.from_csv("planet", label_delim=" ", valid_pct=0.2)  # doctest: +SKIP
        """
        from learnkit.data.csv_labels import read_labels_csv

        path = require_dir(Path(path).expanduser())
        augment = _augment(augment, ds_tfms)
        table = read_labels_csv(path / csv_labels, label_delim)
        seed = 0 if seed is None else seed
        names = list(classes) if classes is not None else table.classes
        if classes is not None:
            check_class_names(names, "the classes given")
        else:
            check_class_names(names, str(path / csv_labels))
            if len(names) < 2:
                raise DataError(
                    f"only one class, '{names[0]}', in {path / csv_labels}: a classifier needs at "
                    "least 2 classes"
                )
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted({c for row in table.labels for c in row} - set(index))
        if unknown:
            raise DataError(f"label '{unknown[0]}' in {path / csv_labels} is not one of the classes {names}")
        labels = [[index[c] for c in row] for row in table.labels]
        if table.is_valid is not None and valid_pct is None:
            valid_idx = [i for i, v in enumerate(table.is_valid) if v]
            train_idx = [i for i, v in enumerate(table.is_valid) if not v]
            split = {"kind": "column", "name": "is_valid"}
        elif valid_pct is not None:
            train_idx, valid_idx = split_by_pct(len(labels), valid_pct, seed)
            split = split_record("", valid_pct, seed)
        else:
            raise DataError(f"{path / csv_labels} has no is_valid column: give valid_pct to split it")
        if not train_idx or not valid_idx:
            raise DataError(f"{path / csv_labels}: the split leaves the train or the valid set empty")
        multi = table.multi_label
        n_classes = len(names) if multi else None

        def dataset(idx: list[int], mode: str) -> ImageDataset:
            ys = [labels[i] if multi else labels[i][0] for i in idx]
            return ImageDataset([table.files[i] for i in idx], ys, size, cache=mode, n_classes=n_classes)

        what = f"{len(labels):,} images at {size} px"
        mode = resolve_cache(cache, 3 * size * size * len(labels), what=what)
        train_ds, valid_ds = dataset(train_idx, mode), dataset(valid_idx, mode)
        bunch = cls._classifier(
            train_ds, valid_ds, names, size=size, bs=bs, seed=seed, num_workers=num_workers, augment=augment,
            norm_stats=pick_norm_stats(normalize, norm_stats),
            device=torch.device(device) if device is not None else default_device(),
            rank=rank, world_size=world_size, multi_label=multi, valid_split=split,
        )  # fmt: skip
        bunch.data_root = path
        bunch.path = path  # fastai v1: a Learner's default path
        return bunch
