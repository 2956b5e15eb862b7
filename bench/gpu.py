"""``python -m bench.gpu`` (``bench/gpu.sh``): the CUDA path checked and measured, in one run.

On a CUDA machine (target: under 8 minutes on one recent GPU) it:

1. runs the ``gpu``-marked tests (``pytest -m gpu``): every one must pass;
2. trains ``sample:shapes`` and a synthetic set (20,000 JPEGs of 128 px in 10 classes, written by
   this script) with ``learnkit fit-one-cycle --precision fp32|bf16|fp16``: the loss must fall and
   the weights stay finite;
3. interrupts a ``--deterministic`` run with SIGINT mid-epoch, resumes it with ``--resume last``
   and compares its final weights with an uninterrupted run's: they must be equal;
4. measures training throughput (images/s) of resnet50 at 224 px, batch 128, bf16 + channels-last
   against a hand-written PyTorch loop (the ratio must be >= 0.95), and the same fed by JPEG
   decoding from a folder against a plain ``DataLoader`` (reported, with where the time goes).

It prints a table (Markdown) and exits 1 when a check fails. Without CUDA it says so and exits 0;
``--smoke`` (or ``LEARNKIT_GPU_SMOKE=1``) runs every step at toy sizes on the CPU instead, to check
the script itself.

    bench/gpu.sh                       # everything, on the GPU
    bench/gpu.sh --only tests,speed    # a subset: tests, precision, resume, speed
    bench/gpu.sh --smoke               # CPU, tiny sizes: the script's own check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from bench import gpu_checks, gpu_data, gpu_speed
from bench.common import Row, format_table, log, machine, rows_as_json

SECTIONS = ("tests", "precision", "resume", "speed")
BUDGET_S = 8 * 60


def _plans(smoke: bool) -> dict:
    """Sizes of every step: the GPU run's, or toy ones on the CPU."""
    from learnkit.data.folder import auto_workers

    if smoke:
        return {
            "device": "cpu",
            "shapes": ["--arch", "simple_cnn", "--epochs", "2", "--lr", "1e-2", "--seed", "0"],
            "synthetic": (
                120,
                32,
                [
                    "--arch",
                    "simple_cnn",
                    "--size",
                    "32",
                    "--bs",
                    "16",
                    "--epochs",
                    "2",
                    "--lr",
                    "1e-2",
                    "--seed",
                    "0",
                ],
            ),  # fmt: skip
            "resume": (
                200,
                32,
                ["--arch", "simple_cnn", "--size", "32", "--bs", "4", "--epochs", "3", "--lr", "1e-3"],
            ),  # fmt: skip
            "speed": gpu_speed.SpeedPlan("cpu", 32, 4, 3, 2, 1, 2, 1, 0),
            "jpegs": (40, (64, 48)),
        }
    return {
        "device": "cuda",
        "shapes": ["--arch", "resnet18", "--epochs", "3", "--lr", "3e-3", "--seed", "0"],
        "synthetic": (
            20_000,
            128,
            [
                "--arch",
                "resnet18",
                "--size",
                "128",
                "--bs",
                "256",
                "--epochs",
                "2",
                "--lr",
                "3e-3",
                "--seed",
                "0",
            ],
        ),  # fmt: skip
        "resume": (
            3_000,
            64,
            ["--arch", "resnet18", "--size", "64", "--bs", "32", "--epochs", "3", "--lr", "1e-3"],
        ),  # fmt: skip
        "speed": gpu_speed.SpeedPlan("cuda", 224, 128, 30, 3, 3, 2, 2, auto_workers(cached=False)),
        "jpegs": (6_000, (500, 375)),
    }


def _run_sections(chosen: list[str], smoke: bool, work: Path) -> list[Row]:
    plan = _plans(smoke)
    # on the GPU the commands pick their own loader workers (none for a set cached in RAM)
    dev = ["--device", plan["device"], *(["--workers", "0"] if smoke else [])]
    rows: list[Row] = []

    def guarded(name: str, fn) -> None:
        start = time.perf_counter()
        try:
            rows.extend(fn())
        except Exception as exc:  # a broken step is a failed row, and the other steps still run
            rows.append(
                Row("gpu", name, "-", None, None, None, "runs", False, f"{type(exc).__name__}: {exc}"[:300])
            )
        log(f"gpu: {name} took {time.perf_counter() - start:.0f} s")

    if "tests" in chosen:
        guarded("tests", lambda: gpu_checks.gpu_tests(smoke))
    if "precision" in chosen:
        n, size, args = plan["synthetic"]

        def precision() -> list[Row]:
            out = gpu_checks.precision_fits(
                "sample:shapes", "sample:shapes", [*plan["shapes"], *dev], work, 0
            )
            start = time.perf_counter()
            folder = gpu_data.make_folder(work / "synthetic", n, size)
            log(f"gpu: wrote {gpu_data.count_images(folder)} JPEGs in {time.perf_counter() - start:.1f} s")
            n_train = sum(1 for _ in (folder / "train").rglob("*.jpg"))
            return out + gpu_checks.precision_fits(
                str(folder), f"synthetic {size}px", [*args, *dev], work, n_train
            )

        guarded("precision", precision)
    if "resume" in chosen:
        n, size, args = plan["resume"]

        def resume() -> list[Row]:
            folder = gpu_data.make_folder(work / "resume-data", n, size)
            return gpu_checks.interrupt_resume(str(folder), [*args, *dev], work / "resume")

        guarded("resume", resume)
    if "speed" in chosen:

        def speed() -> list[Row]:
            rows_c, rate = gpu_speed.compute_bound(plan["speed"])
            n, size = plan["jpegs"]
            folder = gpu_data.make_folder(work / "jpegs", n, size)
            return rows_c + gpu_speed.data_bound(plan["speed"], folder, rate)

        guarded("speed", speed)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/gpu.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke",
        action="store_true",
        default=os.environ.get("LEARNKIT_GPU_SMOKE") == "1",
        help="no GPU needed: every step at toy sizes on the CPU (checks the script)",
    )
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--json", metavar="FILE", help="also write every row (with raw timings) here")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(chosen) - set(SECTIONS):
        parser.error(f"unknown section(s) {sorted(set(chosen) - set(SECTIONS))}; choose from {SECTIONS}")

    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (bench/gpu.sh --smoke runs the steps on the CPU)")
        return 0
    if args.smoke:
        torch.set_num_threads(1)
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # the learnkit commands it starts, too
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="learnkit-gpu-") as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = _run_sections(chosen, args.smoke, work)
    elapsed = time.perf_counter() - started
    if not args.smoke and set(chosen) == set(SECTIONS):
        rows.append(Row("gpu", "whole script", "s (wall)", elapsed, BUDGET_S, elapsed / BUDGET_S,
                        f"< {BUDGET_S} s", elapsed < BUDGET_S))  # fmt: skip
    info = machine()
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    failed = [r for r in rows if r.ok is False]
    print(f"date: {datetime.datetime.now().isoformat(timespec='minutes')}")
    print(f"command: bench/gpu.sh {' '.join(argv if argv is not None else sys.argv[1:])}".strip()
          + f"  ({elapsed / 60:.1f} min{', CPU smoke mode' if args.smoke else ''})")  # fmt: skip
    print("machine: " + ", ".join(f"{k}={v}" for k, v in info.items()))
    print()
    print(format_table(rows))
    print()
    print(f"{'FAILED' if failed else 'ok'}: {len(rows) - len(failed)} of {len(rows)} rows pass or report")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "seconds": elapsed, "rows": rows_as_json(rows)}, f, default=str)
        log(f"rows written to {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
