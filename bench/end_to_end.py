"""End to end from an image folder: ``learnkit fit-one-cycle sample:shapes`` as a user runs it.

Each configuration runs the installed command in a fresh process (wall time from start to exit,
imports and checkpoints included), the configurations taking turns round after round:

- ``ram``: the default, ``--cache auto`` (the sample fits, so its images are decoded once, into
  RAM, while the data set is built; no epoch decodes a file);
- ``none``: ``--cache none``, every epoch decodes every PNG (the default ``--workers`` then starts
  loader workers, kept across epochs);
- ``bf16``: as ``ram`` with ``--precision bf16``.

Beside the command's own per-epoch times, the data path alone is timed in this process: building
the data set (where the RAM cache decodes) and one pass over its train and valid loaders without
a model, with and without the cache. That pass is what the cache saves at each epoch.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Row, interleave, learnkit_exe, log, median

ARGS = ["--arch", "simple_cnn", "--lr", "1e-2", "--seed", "0", "--device", "cpu", "--json"]
CONFIGS = {"ram": ["--cache", "auto"], "none": ["--cache", "none"], "bf16": ["--precision", "bf16"]}


def _fit(extra: list[str], epochs: int, work: Path, threads: int | None) -> dict:
    run = Path(tempfile.mkdtemp(dir=work))
    cmd = [learnkit_exe(), "fit-one-cycle", "sample:shapes", "--epochs", str(epochs), *ARGS, *extra]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    start = time.perf_counter()
    proc = subprocess.run([*cmd, "--path", str(run)], capture_output=True, text=True, timeout=900, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1500:]}")
    result = json.loads(proc.stdout)
    return {
        "wall": wall,
        "epochs": [row["time"] for row in result["history"]],
        "accuracy": result["accuracy"],
    }


def data_path(rounds: int = 3) -> dict[str, dict[str, float]]:
    """Seconds to build the sample's data set, and to read one epoch of it, per cache mode."""
    from learnkit.data import ImageDataBunch
    from learnkit.data.samples import resolve_data

    folder = resolve_data("sample:shapes")

    def measure(cache: str) -> dict[str, float]:
        start = time.perf_counter()
        data = ImageDataBunch.from_folder(folder, size=64, bs=64, cache=cache, num_workers=0, device="cpu")
        built = time.perf_counter()
        for dl in (data.train_dl, data.valid_dl):
            for _ in dl:
                pass
        return {"build": built - start, "epoch_read": time.perf_counter() - built}

    res = interleave({"ram": lambda: measure("ram"), "none": lambda: measure("none")}, rounds)
    return {
        mode: {k: median(r[k] for r in runs) for k in ("build", "epoch_read")} for mode, runs in res.items()
    }


def run(quick: bool = False, threads: int | None = 1) -> list[Row]:
    from learnkit.data.samples import resolve_data

    resolve_data("sample:shapes")  # drawn once, before anything is timed
    epochs, rounds = (3, 1) if quick else (5, 2)
    log("e2e: data path ...")
    reads = data_path(2 if quick else 3)
    log(f"e2e: {rounds} round(s) of fit-one-cycle sample:shapes x {len(CONFIGS)} configurations ...")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fits = {
            name: (lambda extra=extra: _fit(extra, epochs, work, threads)) for name, extra in CONFIGS.items()
        }
        res = interleave(fits, rounds)

    def later(name: str) -> float:  # epochs 2+ of every run
        return median(t for r in res[name] for t in r["epochs"][1:])

    def first(name: str) -> float:
        return median(r["epochs"][0] for r in res[name])

    def acc(name: str) -> float:
        return median(r["accuracy"] for r in res[name])

    def wall(name: str) -> float:
        return median(r["wall"] for r in res[name])

    ram, none = reads["ram"], reads["none"]
    rows = [
        Row(
            "e2e",
            "epoch 1 / epoch 2+ (cache on)",
            "s/epoch",
            first("ram"),
            later("ram"),
            first("ram") / later("ram"),
            ">= 2",
            first("ram") / later("ram") >= 2,
            f"images decode before epoch 1 ({ram['build']:.2f} s); prep + epoch 1: "
            f"{(ram['build'] + first('ram')) / later('ram'):.2f}x; a decoding epoch (--cache none, "
            f"epoch 1, {first('none'):.2f} s): {first('none') / later('ram'):.2f}x",
        ),
        Row(
            "e2e",
            "epoch 2+: cache on / --cache none",
            "s/epoch",
            later("ram"),
            later("none"),
            later("ram") / later("none"),
            "< 1",
            later("ram") < later("none"),
            f"reading one epoch without a model: {ram['epoch_read']:.3f} s cached vs "
            f"{none['epoch_read']:.3f} s decoding",
        ),
        Row(
            "e2e",
            f"fit-one-cycle {epochs} ep wall (cache on)",
            "s",
            wall("ram"),
            wall("none"),
            wall("ram") / wall("none"),
            "",
            None,
            f"accuracy {acc('ram'):.3f} (--cache none: {acc('none'):.3f})",
        ),
        Row(
            "e2e",
            "bf16 vs fp32 accuracy",
            "accuracy",
            acc("bf16"),
            acc("ram"),
            acc("bf16") - acc("ram"),
            "abs diff <= 0.05",
            abs(acc("bf16") - acc("ram")) <= 0.05,
            f"bf16 epoch 2+ {later('bf16'):.2f} s vs fp32 {later('ram'):.2f} s; wall {wall('bf16'):.1f} s",
        ),
    ]
    for row in rows:
        row.extra = {"runs": res, "data_path": reads, "epochs": epochs, "threads": threads}
    return rows
