"""What an epoch's checkpoints cost the training thread, before and after issue 26.

Before: ``last`` (model + optimizer file) and, on an improvement, ``best`` (the same again) were
written, fsynced and renamed by the training thread. After: the training thread takes a snapshot
(copies of the weights, optimizer state, RNG, position; :func:`learnkit.persist.snapshot_learner`)
and a background thread writes ``last`` and makes ``best`` a hard link of its model file
(:mod:`learnkit.checkpoint_writer`). Timed here on a resnet18 learner with Adam state (bs 8,
32 px), median of ``--rounds`` rounds, wall and CPU time of the calling thread, into a
temporary folder on the run's filesystem (``--dir``, default the system's temp folder).

    python -m bench.checkpoint_cost [--rounds 7] [--arch resnet18] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_cost")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--dir", default=None)
    args = parser.parse_args(argv)

    import torch

    from learnkit import ImageDataBunch
    from learnkit.checkpoint_writer import CheckpointWriter
    from learnkit.vision import cnn_learner
    from tests.core.tiny_images import make_class_folder

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = make_class_folder(Path(tmp) / "data")
        data = ImageDataBunch.from_folder(root, size=32, bs=8, augment=False, device="cpu")
        learn = cnn_learner(data, args.arch, pretrained=None, path=Path(tmp) / "run")
        learn.fit(1, 1e-3)  # optimizer state
        size_mb = sum(t.numel() * t.element_size() for t in learn.model.state_dict().values()) / 2**20

        def before() -> None:  # the old critical path: last and best, both with optimizer files
            learn.save("last")
            learn.save("best", metadata={"best": {"epoch": 0}})

        writer = CheckpointWriter()

        def after() -> None:  # the new critical path: the snapshots; the writing goes on behind
            writer.request(learn, "last", True, None)
            writer.request(learn, "best", False, {"best": {"epoch": 0}})

        rows = {"before": [], "after (snapshot)": [], "background write (last + link)": []}
        for _ in range(args.rounds):
            rows["before"].append(_timed(before))
            rows["after (snapshot)"].append(_timed(after))
            start = time.perf_counter()
            writer.wait()
            rows["background write (last + link)"].append((time.perf_counter() - start, float("nan")))
        models = Path(tmp) / "run" / "models"
        files = sorted(p.name for p in models.iterdir())
        linked = (models / "best.safetensors").stat().st_ino == (models / "last.safetensors").stat().st_ino
    print(f"{args.arch}: weights {size_mb:.1f} MB (+ Adam state), {args.rounds} rounds, medians")
    for name, times in rows.items():
        wall = statistics.median(t[0] for t in times)
        cpu = statistics.median(t[1] for t in times)
        print(f"  {name:32s} wall {wall * 1e3:8.1f} ms   thread cpu {cpu * 1e3:8.1f} ms")
    print(f"  files after: {files}; best a link of last: {linked}")


if __name__ == "__main__":
    main()
