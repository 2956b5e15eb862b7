"""Under torchrun, the processes of a run on one machine share one RAM cache: local rank 0 decodes
into a ``/dev/shm`` file mapped shared, the others map it and decode nothing; the file is gone
once every rank has mapped it; skipped files are the same on every rank."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from learnkit.data import shared_cache
from tests.cli.conftest import make_image_folder


def _rank(rank: int, store: str, folder: str, out: str) -> None:
    os.environ.update({"LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2", "MASTER_PORT": "shared-test"})
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    import learnkit.data.dataset as dataset

    decoded = []
    real = dataset.load_image
    dataset.load_image = lambda *a, **k: (decoded.append(1), real(*a, **k))[1]
    # the same list on both ranks, whether or not rank 0 has written broken.png yet (a race that gave
    # rank 1 one path more than rank 0's problem list)
    paths = sorted(p for p in Path(folder).rglob("*.png") if p.name != "broken.png")
    (Path(folder) / "broken.png").write_bytes(b"not a png") if rank == 0 else None
    paths.append(Path(folder) / "broken.png")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dataset.ImageDataset(paths, None, size=16, cache="ram")
    dist.barrier()  # rank 0 has removed the file after the last rank mapped it
    left = sorted(p.name for p in Path("/dev/shm").glob("learnkit-cache-shared-test-*"))
    Path(out, f"{rank}.json").write_text(
        json.dumps({"decoded": len(decoded), "sum": int(ds._x.sum()), "n": len(ds), "left": left})
    )
    dist.destroy_process_group()


@pytest.mark.skipif(not shared_cache.sharing_possible(), reason="no writable /dev/shm")
def test_two_local_ranks_share_one_decoded_cache(tmp_path):
    folder = make_image_folder(tmp_path / "d")
    n_images = len(list(folder.rglob("*.png")))
    mp.spawn(_rank, args=(str(tmp_path / "store"), str(folder), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1))
    assert r0["decoded"] == n_images + 1 and r1["decoded"] == 0  # rank 1 decoded nothing
    assert r0["sum"] == r1["sum"] > 0 and r0["n"] == r1["n"] == n_images  # the broken file skipped on both
    assert r1["left"] == []  # the file is removed once mapped


def test_one_process_caches_privately():
    assert shared_cache.SharedCache.open((1, 3, 2, 2)) is None
    assert torch.distributed.is_initialized() is False
