"""One training step of a zoo model on the CPU, timed: threads, memory format and the batched weight
gradient of small convolution outputs (:mod:`learnkit.conv_grad`) side by side.

    python bench/cpu_step.py --threads 1 2 --archs resnet18 efficientnet_b0 --size 32

Prints the median seconds of a step (forward, backward, learnkit's default Adam) for every
(arch, threads, variant), after warm-up steps; the variants alternate so the machine's load falls
on all. ``channels_last+batched`` is what a CPU fit of learnkit runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from learnkit import conv_grad, registry
from learnkit.optim import AdamW


def step_time(
    arch: str, size: int, bs: int, threads: int, channels_last: bool, batched: bool, steps: int = 8
) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = registry.create(arch, n_out=10)
    x, y = torch.randn(bs, 3, size, size), torch.randint(0, 10, (bs,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = AdamW(model.parameters(), lr=1e-3)
    if batched:
        conv_grad.install(model)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return statistics.median(times[3:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--archs", nargs="+", default=["resnet18"])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    for arch in args.archs:
        for threads in args.threads:
            for layout in ("nchw", "channels_last", "channels_last+batched"):
                last, batched = layout != "nchw", layout.endswith("+batched")
                timed = (arch, args.size, args.bs, threads, last, batched)
                runs = [step_time(*timed) for _ in range(args.rounds)]
                print(f"{arch:16s} threads {threads}  {layout:21s} " + " ".join(f"{t:.3f}" for t in runs))
