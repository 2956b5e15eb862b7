"""Loop overhead: seconds per epoch of ``Learner.fit_one_cycle`` against a plain PyTorch loop.

Both train the same model (the same initial weights) on the same in-memory batches (one
``DataLoader`` over pre-made batches, so loading costs the same), with the same threads, the same
optimizer (Adam, betas (mom, 0.99), decoupled weight decay 0.01) and the same 1cycle schedule:
``torch.optim.lr_scheduler.OneCycleLR`` set to fastai's values (cosine, ``pct_start`` 0.3,
``div_factor`` 25, ``final_div_factor`` 1e4, momentum 0.95 -> 0.85 -> 0.95). Each epoch validates
(loss and accuracy) in both. The plain loop keeps its losses on the device too, and syncs once per
epoch, as a careful hand-written loop does.

Cases: an MLP (the whole batch is framework overhead: what the loop adds is most visible),
``simple_cnn`` at 32 px (the zoo's tiny model), ``resnet18`` at 32 px (compute dominates). The
result is the median seconds per epoch over all epochs but each fit's first (warm-up), fits of the
two loops taking turns; the ratio is learnkit / plain.

The clock is the process's CPU time, with one torch thread: on a machine shared with other work
(a CI box, a laptop), wall time measures the neighbours as much as the loop, while the CPU time of
a single-threaded process is what the loop itself costs. Wall times are kept in the row's extras.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.common import Row, interleave, log, median, spread


@dataclass(frozen=True)
class Case:
    name: str
    make_model: Callable
    size: int
    bs: int
    n_batches: int
    n_valid: int
    epochs: int
    rounds: int
    max_lr: float
    target: str


def _mlp(n_out: int):
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, n_out))


def _simple_cnn(n_out: int):
    from learnkit.zoo.simple_cnn import simple_cnn

    return simple_cnn(n_out)


def _resnet18(n_out: int):
    import torchvision

    return torchvision.models.resnet18(num_classes=n_out)


def cases(quick: bool = False) -> list[Case]:
    q = 2 if quick else 1
    return [
        Case("mlp 8px (overhead only)", _mlp, 8, 32, 100, 4, 4, 8 // q, 1e-2, "report"),
        Case("simple_cnn 32px (tiny)", _simple_cnn, 32, 64, 24, 4, 4, 6 // q, 1e-2, "<= 1.03"),
        Case("resnet18 32px (compute)", _resnet18, 32, 32, 8, 2, 3, 4 // q, 1e-3, "within noise"),
    ]


def memory_cases() -> list[Case]:
    """The fits whose peak memory :mod:`bench.memory` compares (images of sample:shapes' size)."""
    return [
        Case("simple_cnn 64px", _simple_cnn, 64, 64, 12, 2, 2, 1, 1e-2, "<= 1.10"),
        Case("resnet18 64px", _resnet18, 64, 32, 6, 2, 2, 1, 1e-3, "<= 1.10"),
    ]


class _Batches:
    """A data set whose items are whole batches (a ``DataLoader`` with ``batch_size=None`` over it)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.batches[i]


def _make_batches(n: int, bs: int, size: int, n_classes: int, seed: int):
    import torch

    protos = torch.randn(n_classes, 3, size, size, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(seed)  # the same classes in train and valid, other noise
    out = []
    for _ in range(n):
        y = torch.randint(0, n_classes, (bs,), generator=g)
        x = protos[y] + 6.0 * torch.randn(bs, 3, size, size, generator=g)
        out.append((x, y))
    return out


def _loader(batches):
    from torch.utils.data import DataLoader

    return DataLoader(_Batches(batches), batch_size=None, shuffle=False)


def plain_fit(model, train_dl, valid_dl, epochs: int, max_lr: float, device) -> tuple[list[float], float]:
    """A hand-written PyTorch loop with OneCycleLR matched to fastai's 1cycle; per-epoch seconds."""
    import torch
    from torch import nn

    opt = torch.optim.AdamW(model.parameters(), lr=max_lr, betas=(0.95, 0.99), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=max_lr,
        total_steps=epochs * len(train_dl),
        pct_start=0.3,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        div_factor=25.0,
        final_div_factor=1e4,
    )
    loss_func = nn.CrossEntropyLoss()
    times, valid_loss = [], float("nan")
    for _ in range(epochs):
        start = _clock()
        model.train()
        train_loss = torch.zeros((), device=device)
        for xb, yb in train_dl:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step()
            train_loss += loss.detach()
        model.eval()
        total, correct, count = torch.zeros((), device=device), torch.zeros((), device=device), 0
        with torch.no_grad():
            for xb, yb in valid_dl:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                out = model(xb)
                total += loss_func(out, yb) * len(yb)
                correct += (out.argmax(1) == yb).sum()
                count += len(yb)
        valid_loss, _ = float(total) / count, float(correct) / count  # the epoch's one sync
        times.append(_elapsed(start))
    return times, valid_loss


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _elapsed(start: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = _clock()
    return cpu - start[0], wall - start[1]


class _EpochClock:
    """Times each epoch of a fit: from after every ``on_epoch_begin`` to after every ``on_epoch_end``."""

    order = 10**9

    def __init__(self) -> None:
        self.times: list[tuple[float, float]] = []

    def on_epoch_begin(self, state) -> None:
        self._start = _clock()

    def on_epoch_end(self, state) -> None:
        self.times.append(_elapsed(self._start))


def learnkit_fit(model, train_dl, valid_dl, epochs: int, max_lr: float, device) -> tuple[list[float], float]:
    """``Learner.fit_one_cycle`` with its defaults (Recorder, accuracy); per-epoch seconds."""
    from learnkit import DataBunch, Learner, accuracy

    data = DataBunch(train_dl, valid_dl, classes=[str(i) for i in range(4)], device=device)
    learn = Learner(data, model, metrics=[accuracy])
    clock = _EpochClock()
    learn.fit_one_cycle(epochs, max_lr, callbacks=[clock])
    return clock.times, learn.recorder.history[-1]["valid_loss"]


def run(quick: bool = False, threads: int = 1) -> list[Row]:
    import torch

    device = torch.device("cpu")
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return [_run_case(case, device, threads) for case in cases(quick)]
    finally:
        torch.set_num_threads(saved_threads)


def _run_case(case: Case, device, threads: int) -> Row:
    import torch

    log(f"loop: {case.name} ...")
    train = _make_batches(case.n_batches, case.bs, case.size, 4, seed=0)
    valid = _make_batches(case.n_valid, case.bs, case.size, 4, seed=1)
    torch.manual_seed(0)
    initial = case.make_model(4)
    losses: dict[str, list[float]] = {"plain": [], "learnkit": []}

    def one(fit: Callable, key: str) -> list[tuple[float, float]]:
        model = copy.deepcopy(initial)
        times, valid_loss = fit(model, _loader(train), _loader(valid), case.epochs, case.max_lr, device)
        losses[key].append(valid_loss)
        return times[1:]  # the first epoch of each fit is warm-up

    res = interleave(
        {"plain": lambda: one(plain_fit, "plain"), "learnkit": lambda: one(learnkit_fit, "learnkit")},
        case.rounds,
    )
    cpu = {k: [t[0] for fit in fits for t in fit] for k, fits in res.items()}
    wall = {k: [t[1] for fit in fits for t in fit] for k, fits in res.items()}
    ratio = median(cpu["learnkit"]) / median(cpu["plain"])
    rounds = zip(res["learnkit"], res["plain"])
    paired = [median(t[0] for t in mine) / median(t[0] for t in plain) for mine, plain in rounds]
    noise = spread(paired) if len(paired) >= 4 else abs(max(paired) - min(paired)) / 2
    per_batch_us = (median(cpu["learnkit"]) - median(cpu["plain"])) / (case.n_batches + case.n_valid) * 1e6
    if case.target.startswith("<="):
        ok = ratio <= float(case.target.split()[-1])
    elif case.target == "within noise":
        ok = abs(ratio - 1) <= max(noise, 0.03)
    else:
        ok = None
    note = (
        f"{per_batch_us:+.0f} us/batch over {case.n_batches}+{case.n_valid} batches; round-to-round "
        f"spread {noise:.1%}; wall {median(wall['learnkit']):.3g} vs {median(wall['plain']):.3g} s; "
        f"valid loss {median(losses['learnkit']):.3f} vs {median(losses['plain']):.3f}"
    )
    extra = {"threads": threads, "cpu": cpu, "wall": wall, "paired_ratios": paired}
    return Row("loop", case.name, "cpu s/epoch", median(cpu["learnkit"]), median(cpu["plain"]), ratio,
               case.target, ok, note, extra)  # fmt: skip
