"""The CPU-side work learnkit adds to a training step, against the step itself (issue 26).

Three pieces run per batch in a command-line CPU fit:

- :class:`learnkit.callbacks.cpu_threads.CpuThreads` ``on_batch_end``: a clock read every batch,
  and at most every ``sample_every`` (0.05 s) a sample of the machine's load
  (:func:`learnkit.cpu_load.others_runnable`: ``/proc/stat`` and this process's thread states);
- :func:`learnkit.conv_grad.takes_small_output_path`: once per convolution per forward, the check
  that picks the batched weight gradient.

Each is timed alone (median of many calls), then set against a measured resnet18 and simple_cnn
step at 32 px, bs 64, one thread (forward, backward, Adam). The sampling's share is its cost times
its highest rate (20 a second) over a second of training: an upper bound.

    python -m bench.per_batch
"""

from __future__ import annotations

import statistics
import time


def _per_call(fn, n: int) -> float:
    """Median seconds per call of ``fn`` over 7 runs of ``n`` calls."""
    runs = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n)
    return statistics.median(runs)


def _step_seconds(model, size: int = 32, bs: int = 64, steps: int = 6) -> float:
    import torch

    from learnkit import conv_grad

    convs = conv_grad.install(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    x, y = torch.randn(bs, 3, size, size), torch.randint(0, 10, (bs,))
    loss_func = torch.nn.CrossEntropyLoss()

    def step() -> None:
        loss_func(model(x), y).backward()
        opt.step()
        opt.zero_grad()

    step()  # warm-up
    runs = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        runs.append(time.perf_counter() - start)
    conv_grad.uninstall(convs)
    return statistics.median(runs)


def main() -> None:
    import torch
    import torchvision

    from learnkit import conv_grad, cpu_load
    from learnkit.callback import RunState
    from learnkit.callbacks.cpu_threads import CpuThreads
    from learnkit.zoo.simple_cnn import simple_cnn

    torch.set_num_threads(1)
    sample = _per_call(cpu_load.others_runnable, 2000)
    follow = CpuThreads(cores=2)
    state = RunState()
    state.train = True
    follow.on_train_begin(state)
    follow._last = time.perf_counter() + 3600  # the clock check alone (no sample due)
    clock_only = _per_call(lambda: follow.on_batch_end(state), 20000)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1)
    x = torch.randn(64, 256, 2, 2)
    check = _per_call(lambda: conv_grad.takes_small_output_path(conv, x), 20000)
    print(f"others_runnable (one load sample): {sample * 1e6:.1f} us; at most 20 a second: "
          f"{sample * 20:.3%} of training time")  # fmt: skip
    print(f"CpuThreads.on_batch_end without a sample: {clock_only * 1e6:.2f} us")
    print(f"takes_small_output_path (one conv call): {check * 1e6:.2f} us")
    for name, model in (
        ("resnet18", torchvision.models.resnet18(num_classes=10)),
        ("simple_cnn", simple_cnn(10)),
    ):
        n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        step = _step_seconds(model)
        per_step = clock_only + n_convs * check
        print(f"{name} 32px bs 64 step: {step * 1e3:.1f} ms; per-step checks ({n_convs} convs + clock): "
              f"{per_step * 1e6:.1f} us = {per_step / step:.3%}; with the sampling bound: "
              f"{per_step / step + sample * 20:.3%}")  # fmt: skip


if __name__ == "__main__":
    main()
