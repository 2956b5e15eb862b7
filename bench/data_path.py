"""The data path at realistic sizes: a generated folder of JPEGs of 300-640 px in 10 classes.

    python bench/data_path.py --n 4000 --workers 2            # the whole set (issue 27)
    python bench/data_path.py --n 1000 --only decode,loader   # a shorter run
    python bench/data_path.py --n 200 --rounds 1 --runs 1 --listing 2000 --first-batch-max 0 \
        --predict-n 200                                       # a smoke test of every part

Parts (``--only``, comma-separated):

- ``decode``: ms per JPEG, learnkit's decode + resize (``learnkit.data.images.load_image``: the
  header checked by Pillow, a plain JPEG decoded by torchvision, EXIF, bad-image rule) against
  the former all-Pillow path (``open_image`` + Pillow's bilinear resize) and plain
  ``torchvision.io.decode_jpeg`` + ``transforms.v2.functional.resize``, same files, interleaved,
  medians; and the largest pixel difference of each against the Pillow path.
- ``loader``: images/s of one pass over the training loader (uint8 decode, resize, normalise) at
  128 and 224 px, learnkit's ``ImageDataBunch.from_folder`` (streaming: ``cache="none"``; cached:
  ``cache="ram"``, the cache's build counted apart) against torchvision's ``ImageFolder`` +
  ``transforms.v2`` + ``DataLoader``, the same batch size and loader workers.
- ``listing``: seconds to list 5k/20k/40k files (hard links of the generated JPEGs) with
  ``learnkit.data.folder.list_images`` (``os.scandir``, path strings) and torchvision's
  ``ImageFolder(str(root))``, wall (``perf_counter``) and CPU (``process_time``), and learnkit's
  time to the first batch (listing + the scan-time check of every file, streaming). The "within
  2x of ImageFolder" check on 20k files, 9 interleaved rounds::

      python bench/data_path.py --only listing --listing 20000 --rounds 9 --first-batch-max 0

- ``rss``: peak memory of building the RAM cache (``cache="ram"``, 0 workers) in one process
  against two gloo ranks on this machine (``LOCAL_WORLD_SIZE=2``: the shared ``/dev/shm`` cache,
  as ``--nproc 2``), each process started fresh, ``--runs`` times: peak RSS (``VmHWM``, which
  counts the shared cache in each process) and peak PSS (``/proc/<pid>/smaps_rollup``, sampled
  every 20 ms: shared pages split between the processes mapping them); the pair's figure is the
  larger RSS of the two and the peak of their summed PSS; the "data" figures are each process's
  peak PSS less its PSS once torch and learnkit are imported (what the data and its cache add).
  The issue's target: two processes' peak <= 1.3x one process's.
- ``predict``: seconds for ``--predict-n`` JPEGs (default 1,000) through
  ``learnkit.inference.predict_images`` (resnet18, random init, ``--sizes``' first size) against a
  plain torch script doing the same decode (``decode_jpeg``), resize, normalise and forward, the
  same batch size, interleaved, medians; and how many top-1 classes agree.
- ``stream_memory``: peak RSS of the training process (``ru_maxrss``) over one streaming epoch
  with ``--workers`` loader workers and a small model's training steps, learnkit
  (``from_folder(cache="none")``) against torchvision's ``ImageFolder`` + ``DataLoader``, each run
  in a fresh process, ``--runs`` runs each (10 for the issue's "within 10% over 10 runs"),
  interleaved: median and max of each.

Each figure is a median over ``--rounds`` rounds (``--runs`` processes for ``rss`` and
``stream_memory``), the sides taking turns. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()


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
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    from learnkit.data.images import image_to_tensor, load_image, open_image

    def pil(path: Path) -> torch.Tensor:  # learnkit's former path: all Pillow
        return image_to_tensor(open_image(path).resize((size, size), Image.Resampling.BILINEAR))

    def tv(path: Path) -> torch.Tensor:
        img = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB, apply_exif_orientation=True)
        return F.resize(img, [size, size], antialias=True)

    sides = {"learnkit": lambda f: load_image(f, size), "pillow": pil, "torchvision": tv}
    times = _median_turns(rounds, {k: (lambda fn=fn: [fn(f) for f in files]) for k, fn in sides.items()})

    def diff(fn) -> float:
        return max(float((fn(f).float() - pil(f).float()).abs().max()) for f in files)

    return {
        "size": size,
        "files": len(files),
        "learnkit_ms": 1000 * times["learnkit"] / len(files),
        "pillow_ms": 1000 * times["pillow"] / len(files),
        "torchvision_ms": 1000 * times["torchvision"] / len(files),
        "learnkit_vs_pillow_max_diff_255": diff(sides["learnkit"]),
        "torchvision_vs_pillow_max_diff_255": diff(tv),
    }


def _median_turns(rounds: int, sides: dict) -> dict:
    """Median seconds of each side over ``rounds`` rounds, the order rotating each round."""
    names = list(sides)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            sides[k]()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


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
        folder = root / "train"
        walls: dict[str, list[float]] = {"lk": [], "tv": []}
        cpus: dict[str, list[float]] = {"lk": [], "tv": []}
        sides = {"lk": lambda d=folder: list_images(d), "tv": lambda d=folder: ImageFolder(str(d))}
        for r in range(rounds):
            for k in ("lk", "tv") if r % 2 == 0 else ("tv", "lk"):
                wall, cpu = time.perf_counter(), time.process_time()
                sides[k]()
                walls[k].append(time.perf_counter() - wall)
                cpus[k].append(time.process_time() - cpu)
        first = None
        if count <= first_max:  # listing + the scan-time check of every file + one batch
            start = time.perf_counter()
            bunch = _lk_bunch_pct(root, 128)
            next(iter(bunch.train_dl))
            first = time.perf_counter() - start
        med = {k: statistics.median(v) for k, v in walls.items()}
        out.append(
            {
                "files": count,
                "rounds": rounds,
                "list_images_s": med["lk"],
                "imagefolder_s": med["tv"],
                "ratio": med["lk"] / med["tv"],
                "list_images_cpu_s": statistics.median(cpus["lk"]),
                "imagefolder_cpu_s": statistics.median(cpus["tv"]),
                "first_batch_s": first,
            }
        )
        shutil.rmtree(root)
    return out


def _lk_bunch_pct(root: Path, size: int):
    from learnkit import ImageDataBunch

    return ImageDataBunch.from_folder(
        root, train="train", valid_pct=0.2, size=size, bs=64, num_workers=0, cache="none", device="cpu"
    )


# --- memory: each measured process is started fresh (``--child``), so one peak is not another's


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _proc_memory(pid: int) -> tuple[int, int] | None:
    """``(Rss, Pss)`` in bytes of a live process, from ``/proc/<pid>/smaps_rollup``."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    got = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            got[key] = int(rest.split()[0]) * 1024
    return (got["Rss"], got["Pss"]) if len(got) == 2 else None


def _run_children(cmds: list[tuple[list[str], dict]]) -> tuple[list[dict], list[int], int]:
    """Start every command at once, sample each one's PSS every 20 ms until all end:
    ``(each one's JSON report, each one's peak PSS, the peak of their summed PSS)``."""
    procs = [
        subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        for cmd, env in cmds
    ]
    peak_each, peak_sum = [0] * len(procs), 0
    while any(p.poll() is None for p in procs):
        total = 0
        for i, p in enumerate(procs):
            mem = _proc_memory(p.pid) if p.poll() is None else None
            if mem is not None:
                peak_each[i] = max(peak_each[i], mem[1])
                total += mem[1]
        peak_sum = max(peak_sum, total)
        time.sleep(0.02)
    reports = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a measured process failed (exit {p.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports, peak_each, peak_sum


def _child_cmd(part: str, args: argparse.Namespace, root: Path, **extra) -> list[str]:
    cmd = [sys.executable, str(HERE), "--child", part, "--folder", str(root), "--bs", str(args.bs)]
    cmd += ["--workers", str(args.workers), "--sizes", args.sizes]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def _peak_rss() -> int:
    """This process's peak RSS in bytes: ``VmHWM`` (``ru_maxrss`` would do, but Linux carries it
    over ``execve``, so a child started by this script would report its parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_rss(root: Path, size: int, bs: int) -> dict:
    """One rank: build the RAM cache of ``root`` (every rank of a gloo group does, sharing it)."""
    import torch.distributed as dist

    from learnkit import ImageDataBunch
    from learnkit.data import dataset, folder, images, loader  # noqa: F401  (imported before "before")
    from learnkit.data.shared_cache import _local_group, sharing_possible

    images._torchvision_decoders()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    before = _proc_memory(os.getpid())  # after the imports: what any process of a run holds
    data = ImageDataBunch.from_folder(root, size=size, bs=bs, num_workers=0, cache="ram", device="cpu")
    x, _ = next(iter(data.train_dl))
    shared = _local_group() is not None and sharing_possible()
    if dist.is_initialized():
        dist.barrier()  # every rank holds its cache at once
        dist.destroy_process_group()
    return {
        "rss_peak": _peak_rss(),
        "pss_before": before[1] if before else 0,
        "cached": data.train_ds.cached,
        "shared": shared,
        "batch": list(x.shape),
    }


def bench_rss(root: Path, args: argparse.Namespace, size: int) -> dict:
    ones, twos = [], []
    for _ in range(args.runs):
        reports, each, _ = _run_children([(_child_cmd("rss", args, root, size=size), {"WORLD_SIZE": "1"})])
        ones.append((reports[0]["rss_peak"], each[0], each[0] - reports[0]["pss_before"]))
        port = str(_free_port())
        env = {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        cmds = [
            (_child_cmd("rss", args, root, size=size), {**env, "RANK": str(r), "LOCAL_RANK": str(r)})
            for r in (0, 1)
        ]
        reports, each, total = _run_children(cmds)
        data_part = sum(e - r["pss_before"] for e, r in zip(each, reports))
        twos.append((max(r["rss_peak"] for r in reports), total, each, reports[0], data_part))
    mib = 2**20
    one_rss = statistics.median(r for r, _, _ in ones)
    one_pss = statistics.median(p for _, p, _ in ones)
    one_data = statistics.median(d for *_, d in ones)
    two_data = statistics.median(t[4] for t in twos)
    two_rss = statistics.median(r for r, *_ in twos)
    two_pss = statistics.median(t for _, t, *_ in twos)
    return {
        "size": size,
        "runs": args.runs,
        "one_rss_mib": one_rss / mib,
        "one_pss_mib": one_pss / mib,
        "two_max_rss_mib": two_rss / mib,
        "two_sum_pss_mib": two_pss / mib,
        "two_each_pss_mib": [round(p / mib, 1) for p in twos[-1][2]],
        "rss_ratio": two_rss / one_rss,
        "pss_ratio": two_pss / one_pss,
        "one_data_pss_mib": one_data / mib,
        "two_data_pss_mib": two_data / mib,
        "data_pss_ratio": two_data / one_data,
        "shared_cache": twos[-1][3]["shared"],
    }


def child_stream(root: Path, side: str, size: int, bs: int, workers: int) -> dict:
    """One streaming epoch with ``workers`` loader workers and a small model's training steps."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if side == "learnkit":
        dl = _lk_bunch(root, size, bs, workers, "none").train_dl
    else:
        dl = _tv_loader(root, size, bs, workers)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n = 0
    for x, y in dl:
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(x)
    return {"rss_peak": _peak_rss(), "images": n}


def bench_stream_memory(root: Path, args: argparse.Namespace, size: int) -> dict:
    peaks: dict[str, list[int]] = {"learnkit": [], "torchvision": []}
    for r in range(args.runs):
        for side in ("learnkit", "torchvision") if r % 2 == 0 else ("torchvision", "learnkit"):
            reports, _, _ = _run_children([(_child_cmd("stream", args, root, size=size, side=side), {})])
            peaks[side].append(reports[0]["rss_peak"])
    mib = 2**20
    lk, tv = statistics.median(peaks["learnkit"]), statistics.median(peaks["torchvision"])
    return {
        "size": size,
        "runs": args.runs,
        "workers": args.workers,
        "learnkit_median_mib": lk / mib,
        "learnkit_max_mib": max(peaks["learnkit"]) / mib,
        "torchvision_median_mib": tv / mib,
        "torchvision_max_mib": max(peaks["torchvision"]) / mib,
        "median_ratio": lk / tv,
        "learnkit_runs_mib": [round(p / mib) for p in peaks["learnkit"]],
        "torchvision_runs_mib": [round(p / mib) for p in peaks["torchvision"]],
    }


def bench_predict(root: Path, n: int, size: int, bs: int, rounds: int) -> dict:
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg, read_file
    from torchvision.transforms.v2 import functional as F

    from learnkit import cnn_learner
    from learnkit.data import DataBunch
    from learnkit.data.augment import IMAGENET_STATS
    from learnkit.inference import predict_images

    files = sorted(root.rglob("*.jpg"))[:n]
    data = DataBunch.for_inference([f"c{i}" for i in range(10)], size, IMAGENET_STATS, device="cpu")
    learn = cnn_learner(data, "resnet18", pretrained=False)
    model = learn.model.eval()
    mean = torch.tensor(IMAGENET_STATS["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STATS["std"]).view(1, 3, 1, 1)

    def plain() -> torch.Tensor:  # what a user would write: decode, resize, normalise, forward
        out = []
        with torch.no_grad():
            for i in range(0, len(files), bs):
                batch = torch.stack(
                    [
                        F.resize(
                            decode_jpeg(
                                read_file(str(f)), mode=ImageReadMode.RGB, apply_exif_orientation=True
                            ),
                            [size, size],
                            antialias=True,
                        )
                        for f in files[i : i + bs]
                    ]
                )
                x = (batch.float() / 255 - mean) / std
                out.append(model(x).softmax(1))
        return torch.cat(out)

    def ours() -> list:
        return list(predict_images(learn, files, bs=bs))

    times = _median_turns(rounds, {"learnkit": ours, "plain": plain})
    agree = sum(p.index == int(q.argmax()) for p, q in zip(ours(), plain()))
    return {
        "size": size,
        "images": len(files),
        "bs": bs,
        "learnkit_s": times["learnkit"],
        "plain_s": times["plain"],
        "ratio": times["learnkit"] / times["plain"],
        "top1_agree": f"{agree}/{len(files)}",
    }


def child_main(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    root, size = Path(args.folder), int(args.size)
    if args.child == "rss":
        report = child_rss(root, size, args.bs)
    else:
        report = child_stream(root, args.side, size, args.bs, args.workers)
    print(json.dumps(report), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4000, help="JPEGs to generate (a quarter held out)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10, help="fresh processes per side (rss, stream_memory)")
    ap.add_argument("--sizes", default="128,224")
    ap.add_argument("--listing", default="5000,20000,40000")
    ap.add_argument("--only", default="decode,loader,listing,rss,predict,stream_memory")
    ap.add_argument("--first-batch-max", type=int, default=40000, help="time the first batch up to N files")
    ap.add_argument("--predict-n", type=int, default=1000, help="JPEGs for the predict part")
    ap.add_argument("--folder", default=None, help="reuse a generated folder")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--size", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return
    import torch

    torch.set_num_threads(1)
    parts = set(args.only.split(","))
    known = {"decode", "loader", "listing", "rss", "predict", "stream_memory"}
    if parts - known:
        ap.error(f"--only: unknown part(s) {sorted(parts - known)}; choose from {sorted(known)}")
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
    if "rss" in parts:
        for size in sizes:
            print("rss", bench_rss(root, args, size), flush=True)
    if "predict" in parts:
        print("predict", bench_predict(root, args.predict_n, sizes[0], args.bs, args.rounds), flush=True)
    if "stream_memory" in parts:
        for size in sizes:
            print("stream_memory", bench_stream_memory(root, args, size), flush=True)


if __name__ == "__main__":
    main()
