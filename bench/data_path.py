"""The data path at realistic sizes: a generated folder of JPEGs of 300-640 px in 10 classes.

    python bench/data_path.py --n 4000 --workers 2            # the whole set (issue 27)
    python bench/data_path.py --n 1000 --only decode,loader   # a shorter run

Parts (``--only``, comma-separated):

- ``decode``: ms per JPEG, learnkit's decode + resize (``learnkit.data.images.load_image``: PIL,
  draft scaling, EXIF, bad-image rule) against ``torchvision.io.decode_jpeg`` + ``transforms.v2``
  resize, same files, interleaved, medians; and the largest pixel difference.
- ``loader``: images/s of one pass over the training loader (uint8 decode, resize, normalise) at
  128 and 224 px, learnkit's ``ImageDataBunch.from_folder`` (streaming: ``cache="none"``; cached:
  ``cache="ram"``, the cache's build counted apart) against torchvision's ``ImageFolder`` +
  ``transforms.v2`` + ``DataLoader``, the same batch size and loader workers.
- ``listing``: seconds to list 5k/20k/40k files (hard links of the generated JPEGs) with
  ``learnkit.data.folder.list_images`` (``os.scandir``) and torchvision's ``ImageFolder``, and
  learnkit's time to the first batch (listing + the scan-time check of every file, streaming).

Each figure is a median over ``--rounds`` rounds, the sides taking turns. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def make_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``root/train/<c>/*.jpg`` and ``root/valid/<c>/*.jpg``: ``n`` JPEGs of 300-640 px a side (a
    quarter held out), smooth gradients and noise (so they compress like photos), 10 classes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(n):
        split = "valid" if i % 4 == 3 else "train"
        folder = root / split / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (int(v) for v in rng.integers(300, 641, size=2))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (1 + i % 3)) % 256, (yy * 2) % 256, ((xx + yy) * (i % 5 + 1)) % 256], -1)
        img = np.clip(base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def _median_pair(rounds: int, a, b) -> tuple[float, float]:
    ta, tb = [], []
    for r in range(rounds):
        for side in ((a, ta), (b, tb)) if r % 2 == 0 else ((b, tb), (a, ta)):
            start = time.perf_counter()
            side[0]()
            side[1].append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def bench_decode(files: list[Path], size: int, rounds: int) -> dict:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms import v2

    from learnkit.data.images import load_image

    resize = v2.Resize((size, size), antialias=True)

    def tv(path: Path) -> torch.Tensor:
        return resize(decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True))

    ours, theirs = _median_pair(
        rounds, lambda: [load_image(f, size) for f in files], lambda: [tv(f) for f in files]
    )
    diff = max(float((load_image(f, size).float() - tv(f).float()).abs().max()) for f in files[:50])
    return {
        "size": size,
        "learnkit_ms": 1000 * ours / len(files),
        "torchvision_ms": 1000 * theirs / len(files),
        "max_abs_diff_255": diff,
    }


def _tv_loader(root: Path, size: int, bs: int, workers: int):
    import torch
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    tfm = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    ds = ImageFolder(str(root / "train"), transform=tfm)
    return DataLoader(ds, batch_size=bs, shuffle=True, num_workers=workers, persistent_workers=False)


def _lk_bunch(root: Path, size: int, bs: int, workers: int, cache: str):
    from learnkit import ImageDataBunch

    return ImageDataBunch.from_folder(
        root, size=size, bs=bs, num_workers=workers, cache=cache, augment=False, device="cpu"
    )


def _one_pass(dl) -> int:
    n = 0
    for x, _ in dl:
        n += len(x)
    return n


def bench_loader(root: Path, size: int, bs: int, workers: int, rounds: int) -> dict:
    n_train = len(list((root / "train").rglob("*.jpg")))
    stream = _lk_bunch(root, size, bs, workers, "none")
    tv = _tv_loader(root, size, bs, workers)
    lk_t, tv_t = _median_pair(rounds, lambda: _one_pass(stream.train_dl), lambda: _one_pass(tv))
    start = time.perf_counter()
    cached = _lk_bunch(root, size, bs, 0, "ram")
    build = time.perf_counter() - start
    passes = []
    for _ in range(rounds):
        start = time.perf_counter()
        _one_pass(cached.train_dl)
        passes.append(time.perf_counter() - start)
    cached_t = statistics.median(passes)
    return {
        "size": size,
        "images": n_train,
        "learnkit_stream_img_s": n_train / lk_t,
        "torchvision_img_s": n_train / tv_t,
        "learnkit_cached_img_s": n_train / cached_t,
        "cache_build_s": build,
    }


def bench_listing(src: Path, counts: list[int], rounds: int, first_max: int) -> list[dict]:
    from torchvision.datasets import ImageFolder

    from learnkit.data.folder import list_images

    files = sorted(src.rglob("*.jpg"))
    out = []
    for count in counts:
        root = Path(tempfile.mkdtemp(prefix=f"lk-list-{count}-"))
        for k in range(count):
            f = files[k % len(files)]
            dest = root / "train" / f.parent.name / f"{k:06d}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
        ours, theirs = _median_pair(
            rounds, lambda r=root: list_images(r / "train"), lambda r=root: ImageFolder(str(r / "train"))
        )
        first = None
        if count <= first_max:  # listing + the scan-time check of every file + one batch
            start = time.perf_counter()
            bunch = _lk_bunch_pct(root, 128)
            next(iter(bunch.train_dl))
            first = time.perf_counter() - start
        out.append({"files": count, "list_images_s": ours, "imagefolder_s": theirs, "first_batch_s": first})
        shutil.rmtree(root)
    return out


def _lk_bunch_pct(root: Path, size: int):
    from learnkit import ImageDataBunch

    return ImageDataBunch.from_folder(
        root, train="train", valid_pct=0.2, size=size, bs=64, num_workers=0, cache="none", device="cpu"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="JPEGs to generate (a quarter held out)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="128,224")
    ap.add_argument("--listing", default="5000,20000,40000")
    ap.add_argument("--only", default="decode,loader,listing")
    ap.add_argument("--first-batch-max", type=int, default=40000, help="time the first batch up to N files")
    ap.add_argument("--folder", default=None, help="reuse a generated folder")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    parts = set(args.only.split(","))
    root = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="lk-data-path-"))
    if not (root / "train").is_dir():
        start = time.perf_counter()
        make_folder(root, args.n)
        print(f"generated {args.n} JPEGs in {time.perf_counter() - start:.1f}s: {root}", flush=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    files = sorted(root.rglob("*.jpg"))[:200]
    if "decode" in parts:
        for size in sizes:
            print("decode", bench_decode(files, size, args.rounds), flush=True)
    if "loader" in parts:
        for size in sizes:
            print("loader", bench_loader(root, size, args.bs, args.workers, args.rounds), flush=True)
    if "listing" in parts:
        counts = [int(c) for c in args.listing.split(",")]
        for row in bench_listing(root, counts, args.rounds, args.first_batch_max):
            print("listing", row, flush=True)


if __name__ == "__main__":
    main()
