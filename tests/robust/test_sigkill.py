"""kill -9 at random moments of a fit: every checkpoint file left on disk loads, and ``last`` resumes.

Each try forks a training process from a fork server that has torch and learnkit imported already
(so a try costs a fork, not an interpreter start), lets it run for a random time (often inside a
checkpoint write: one is written every epoch of ~12 tiny batches), then SIGKILLs it. After each kill
every model file is loaded with its optimizer state, as ``--resume`` does, and every other try
resumes from ``last``.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from pathlib import Path

import pytest

from learnkit.checkpoint import MODEL_FORMAT, OPT_FORMAT, read_safetensors, stale_temp_files
from learnkit.jobs.setup import build_learner

TRIES = 20
PRELOAD = [
    "torch",
    "torch._dynamo",
    "learnkit.jobs.setup",
    "learnkit.jobs.train",
    "learnkit.vision.cnn",
    "learnkit.zoo.builtin",
]


def _fit_forever(folder: str, path: str, resume: bool) -> None:
    """A long fit (saving ``last`` every epoch and ``best`` on improvement), resumed when asked."""
    import warnings

    import torch

    from learnkit.jobs.config import RunConfig
    from learnkit.jobs.train import run

    torch.set_num_threads(1)  # two cores shared with the test process: threads would only contend
    warnings.simplefilter("ignore")
    config = RunConfig.from_flat(
        "fit", data=folder, arch="simple_cnn", epochs=10_000, lr=1e-3, bs=4, size=16, seed=0, path=path,
        device="cpu", monitor="valid_loss", resume="last" if resume else None, exist_ok=True,
    )  # fmt: skip
    run(config)


def _check_all_load(models: Path, learn) -> list[str]:
    """Every checkpoint file reads (validated: framing, format, finite values), and every model
    file loads into a learner with its optimizer state (so ``--resume`` would work)."""
    names = []
    for file in sorted(models.glob("*.safetensors")):
        kind = OPT_FORMAT if file.name.endswith(".opt.safetensors") else MODEL_FORMAT
        read_safetensors(file, expect_format=kind)
        names.append(file.name)
        if kind == MODEL_FORMAT:  # best is for inference: its weights alone
            learn.load(file, with_opt=None if file.stem == "best" else True)
    return names


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_every_checkpoint_loadable(tiny_folder, tmp_path):
    learn = build_learner(str(tiny_folder), "simple_cnn", bs=4, size=16, device="cpu", path=tmp_path / "x")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    rng = random.Random(20240601)
    models = tmp_path / "run" / "models"
    seen: set[str] = set()
    torn_writes = 0
    started = time.perf_counter()
    for i in range(TRIES):
        resume = i % 2 == 1 and (models / "last.opt.safetensors").exists()
        proc = ctx.Process(target=_fit_forever, args=(str(tiny_folder), str(tmp_path / "run"), resume))
        proc.start()
        proc.join(rng.uniform(0.1, 1.0))
        assert proc.exitcode is None, f"try {i}: the fit ended by itself (exit {proc.exitcode})"
        proc.kill()
        proc.join()
        if models.is_dir():
            torn_writes += bool(stale_temp_files(models))  # killed inside a write: left its temp file
            seen.update(_check_all_load(models, learn))
    assert {"last.safetensors", "last.opt.safetensors", "best.safetensors"} <= seen
    assert "best.opt.safetensors" not in seen
    assert time.perf_counter() - started < 60
    print(f"{TRIES} kills, {torn_writes} inside a checkpoint write")
