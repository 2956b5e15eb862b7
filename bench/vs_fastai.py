"""learnkit against fastai v2, side by side: accuracy and whole-command wall time.

Both run as a user runs them, in a fresh process from start to checkpoint: ``learnkit
fit-one-cycle DATA ...`` (its defaults) and ``bench/fastai_side.py`` (fastai's default recipe) in
a separate venv that has fastai. Same arch, size, batch size, epochs and learning rate, no
pretrained weights, several seeds; the two sides take turns (A, B, A, B...) so that the load of
the shared machine falls on both alike. Run (after ``bench/make_sets.py``)::

    python bench/vs_fastai.py --sets /tmp/sets --fastai-python /work/fastai-venv/bin/python \
        --seeds 0 1 2 --json /tmp/vs_fastai.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _learnkit(data: Path, run: Path, args: argparse.Namespace, seed: int, extra: list[str]) -> list[str]:
    exe = shutil.which("learnkit") or str(Path(sys.executable).with_name("learnkit"))
    return [
        exe, "--quiet", "fit-one-cycle", str(data), "--arch", args.arch, "--size", str(args.size),
        "--bs", str(args.bs), "--epochs", str(args.epochs), "--lr", str(args.lr), "--seed", str(seed),
        "--device", "cpu",
        "--path", str(run), "--json", *extra,
    ]  # fmt: skip


def _fastai(data: Path, run: Path, args: argparse.Namespace, seed: int) -> list[str]:
    return [
        args.fastai_python, str(HERE / "fastai_side.py"), str(data), "--arch", args.arch,
        "--size", str(args.size), "--bs", str(args.bs), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--seed", str(seed), "--path", str(run), *args.fastai_args.split(),
    ]  # fmt: skip


def _timed(cmd: list[str], threads: int | None) -> tuple[float, dict]:
    env = dict(os.environ)
    if threads is not None:  # both sides alike; None: each tool's own default
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-1500:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    return wall, json.loads(lines[-1])


def _imports_time(rounds: int) -> float:
    """Median wall time of ``python -c "import torch, torchvision"``: what any torch command pays."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch, torchvision"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fixed_costs(rows: list[dict], args: argparse.Namespace) -> None:
    """learnkit's fixed cost (wall minus the sum of its epoch times) against the imports alone, and its
    wall time as a fraction of fastai's (issue 26: <= 1.5 s over the imports, <= 0.55x)."""
    imports = _imports_time(max(len(args.seeds), 5))
    print(f"\npython -c 'import torch, torchvision': {imports:.2f} s (median)")
    for name in args.names:
        sel = {side: [r for r in rows if r["set"] == name and r["side"] == side] for side in args.sides}
        if sel.get("learnkit"):
            fixed = statistics.median(r["wall"] - sum(r["epoch_times"]) for r in sel["learnkit"])
            over = fixed - imports
            print(f"{name}: learnkit fixed cost {fixed:.2f} s (median), {over:+.2f} s over the imports")
        if sel.get("learnkit") and sel.get("fastai"):
            ratio = statistics.median(r["wall"] for r in sel["learnkit"]) / statistics.median(
                r["wall"] for r in sel["fastai"]
            )
            print(f"{name}: learnkit / fastai wall time (medians) {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=Path, required=True)
    parser.add_argument("--names", nargs="+", default=["digits", "textures"])
    parser.add_argument("--fastai-python", default="/work/fastai-venv/bin/python")
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--learnkit-args", default="", help="extra learnkit options (quoted)")
    parser.add_argument("--fastai-args", default="", help="extra fastai_side.py options (quoted)")
    parser.add_argument(
        "--threads", type=int, help="OMP_NUM_THREADS for both sides (default: each tool's own choice)"
    )
    parser.add_argument("--sides", nargs="+", default=["learnkit", "fastai"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vs_fastai_"))
    rows = []
    for name in args.names:
        data = args.sets / name
        for seed in args.seeds:
            # A, B then B, A on the next seed: neither side always runs on a warmer (or busier) machine
            order = ["learnkit", "fastai"] if seed % 2 == 0 else ["fastai", "learnkit"]
            order = [side for side in order if side in args.sides]
            for side in order:
                run = work / f"{name}-{side}-{seed}"
                cmd = (
                    _learnkit(data, run, args, seed, args.learnkit_args.split())
                    if side == "learnkit"
                    else _fastai(data, run, args, seed)
                )
                load = os.getloadavg()[0]
                wall, result = _timed(cmd, args.threads)
                rows.append(
                    {
                        "set": name,
                        "side": side,
                        "seed": seed,
                        "wall": wall,
                        "accuracy": result["accuracy"],
                        "threads": result.get("cpu_threads", args.threads),
                        "thread_changes": result.get("cpu_threads_changes"),
                        "epoch_times": [round(h["time"], 2) for h in result.get("history", [])],
                        "args": args.learnkit_args if side == "learnkit" else args.fastai_args,
                        "load_before": load,
                    }
                )
                print(
                    f"{name:9s} {side:8s} seed {seed}: accuracy {result['accuracy']:.4f}  wall {wall:6.1f} s"
                )
    print()
    print("| set | side | accuracy (mean of seeds) | min | wall s (median) |")
    print("|---|---|---|---|---|")
    for name in args.names:
        for side in args.sides:
            sel = [r for r in rows if r["set"] == name and r["side"] == side]
            accs, walls = [r["accuracy"] for r in sel], [r["wall"] for r in sel]
            print(
                f"| {name} | {side} | {statistics.mean(accs):.4f} | {min(accs):.4f} | "
                f"{statistics.median(walls):.1f} |"
            )
    _fixed_costs(rows, args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
