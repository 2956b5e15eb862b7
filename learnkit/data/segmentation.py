"""``SegmentationDataBunch.from_folder``: images with per-pixel class masks.

Layout: ``DATA/images/*``, ``DATA/masks/*`` (one mask per image, same file stem, any image
extension), ``DATA/codes.txt`` (one class name a line; blank lines ignored). A mask's pixel values
are class indices into the codes (a greyscale or palette PNG, never a colour picture); masks are
resized with nearest-neighbour so no new values appear. An image without a mask or a missing
``codes.txt`` is a ``DataError``; a pair whose image or mask cannot be used (unreadable, or mask
values beyond the codes) is skipped by the rule of ``learnkit.data.dataset``, with the reason in
the warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from learnkit.class_names import MAX_CLASS_CHARS, MAX_CLASSES, check_class_names
from learnkit.data.augment import AugmentSettings
from learnkit.data.bunch import DataBunch, default_device
from learnkit.data.dataset import ImageDataset, resolve_cache
from learnkit.data.folder import (
    _augment,
    build_loaders,
    dist_info,
    list_images,
    pick_norm_stats,
    require_dir,
    split_by_pct,
    split_record,
)
from learnkit.errors import DataError

MAX_CODES_BYTES = MAX_CLASS_CHARS * 4 + MAX_CLASSES  # the class-name budget in UTF-8, one a line


def read_codes(path: Path) -> list[str]:
    """The class names in ``path`` (codes.txt), one a line."""
    if not path.is_file():
        raise DataError(f"no class list: {path} not found (one class name a line, background first)")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CODES_BYTES + 1)
        if len(raw) > MAX_CODES_BYTES:
            raise DataError(f"class list {path} is larger than the {MAX_CODES_BYTES} bytes allowed")
        codes = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read class list {path}: {exc}") from None
    if not codes:
        raise DataError(f"class list is empty: {path}")
    check_class_names(codes, str(path))  # the rule a checkpoint's classes are read back with
    return codes


def match_masks(images: list[Path], mask_dir: Path) -> list[Path]:
    """The mask of each image (same stem in ``mask_dir``); ``DataError`` naming the first unmatched."""
    by_stem: dict[str, Path] = {}
    for mask in map(Path, list_images(mask_dir)):
        if mask.parent == mask_dir:
            by_stem.setdefault(mask.stem, mask)
    unmatched = [img for img in images if img.stem not in by_stem]
    if unmatched:
        raise DataError(
            f"{len(unmatched)} of {len(images)} images have no mask with the same name in {mask_dir} "
            f"(first: {unmatched[0].name})"
        )
    return [by_stem[img.stem] for img in images]


class SegmentationDataBunch(DataBunch):
    """A ``DataBunch`` of images with class masks (``task="segmentation"``); see ``from_folder``."""

    @classmethod
    def from_folder(
        cls,
        path: str | Path,
        size: int = 64,
        bs: int = 16,
        valid_pct: float = 0.2,
        seed: int | None = 0,
        num_workers: int | None = None,
        augment: bool | AugmentSettings = False,
        cache: str = "auto",
        device: torch.device | str | None = None,
        normalize: bool = True,
        images: str = "images",
        masks: str = "masks",
        codes: str | Sequence[str] = "codes.txt",
        *,
        valid: str | Path | None = None,
        ds_tfms: Any = None,
        norm_stats: dict | None = None,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> SegmentationDataBunch:
        """Images of ``path/images``, masks of ``path/masks``, classes of ``path/codes.txt``.

        ``codes`` is the file of class names, or (fastai v1's) the names themselves. The
        validation set is the images listed in the file ``valid`` (fastai v1's ``valid.txt``: one
        image file name a line, relative to ``images`` or to ``path``) when it is given, else
        ``valid_pct`` of the pairs (drawn with ``seed``). No augmentation unless ``augment`` or
        ``ds_tfms`` (``get_transforms()``) is given. Batches are
        ``x``: float ``N x 3 x size x size``, ``y``: long ``N x size x size``. The other arguments
        are those of ``ImageDataBunch.from_folder``; augmentation moves images and masks together.

        Example:
            >>> data = SegmentationDataBunch.from_folder("data/streets", size=128)  # doctest: +SKIP
            >>> data.classes  # doctest: +SKIP
            ['background', 'road', 'car']
        """
        path = require_dir(Path(path).expanduser())
        dev = torch.device(device) if device is not None else default_device()
        seed = 0 if seed is None else seed
        norm_stats = pick_norm_stats(normalize, norm_stats)
        image_dir = require_dir(path / images, f"'{images}' folder")
        mask_dir = require_dir(path / masks, f"'{masks}' folder")
        class_names = read_codes(path / codes) if isinstance(codes, (str, Path)) else [str(c) for c in codes]
        if not class_names:
            raise DataError("codes is empty: give one class name per mask value")
        augment = _augment(augment, ds_tfms)
        image_paths = [p for p in map(Path, list_images(image_dir)) if p.parent == image_dir]
        if not image_paths:
            raise DataError(f"no images in {image_dir}")
        mask_paths = match_masks(image_paths, mask_dir)
        if valid is not None:
            train_idx, valid_idx = _listed_split(image_paths, path, Path(valid))
        else:
            train_idx, valid_idx = split_by_pct(len(image_paths), valid_pct, seed)
        if not valid_idx or not train_idx:
            raise DataError(f"too few images in {image_dir} to split off a validation set")
        what = f"{len(image_paths):,} images and masks at {size} px"
        mode = resolve_cache(cache, 4 * size * size * len(image_paths), what=what)

        def dataset(idx: list[int]) -> ImageDataset:
            return ImageDataset(
                [image_paths[i] for i in idx],
                size=size,
                masks=[mask_paths[i] for i in idx],
                n_codes=len(class_names),
                cache=mode,
            )

        train_ds, valid_ds = dataset(train_idx), dataset(valid_idx)
        rank, world_size = dist_info(rank, world_size)
        train_dl, valid_dl = build_loaders(
            train_ds,
            valid_ds,
            bs=bs,
            seed=seed,
            num_workers=num_workers,
            augment=augment,
            norm_stats=norm_stats,
            device=dev,
            masks=True,
            rank=rank,
            world_size=world_size,
        )
        bunch = cls(
            train_dl,
            valid_dl,
            classes=class_names,
            device=dev,
            norm_stats=norm_stats,
            size=size,
            task="segmentation",
            valid_split=(
                {"kind": "file", "name": str(valid)}
                if valid is not None
                else split_record("", valid_pct, seed)
            ),
        )
        bunch.data_root = path  # file names in the data fingerprint are relative to it
        bunch.path = path  # fastai v1: a Learner's default path
        return bunch


def _listed_split(images: list[Path], root: Path, listing: Path) -> tuple[list[int], list[int]]:
    """``(train, valid)`` indices: valid are the images named in ``listing`` (a file, one name a
    line; a name may be a path relative to the images folder or to ``root``)."""
    file = listing if listing.is_absolute() else root / listing
    if not file.is_file():
        raise DataError(f"no validation list {file} (one image file name a line)")
    names = [ln.strip() for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    wanted = {Path(n).name for n in names}
    valid = [i for i, p in enumerate(images) if p.name in wanted]
    found = {images[i].name for i in valid}
    missing = sorted(wanted - found)
    if missing:
        raise DataError(
            f"{file} names {len(missing)} image(s) not in the images folder (first: {missing[0]})"
        )
    train = [i for i in range(len(images)) if i not in set(valid)]
    return train, valid
