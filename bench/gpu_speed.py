"""Training throughput on a GPU: learnkit's ``Learner`` against a hand-written PyTorch loop.

Both sides train the same model from the same initial weights (torchvision resnet50, bf16
autocast, the model channels-last, Adam(W) with 1cycle as in :mod:`bench.loop_overhead`), taking
turns round after round (:func:`bench.common.interleave`); a result is the median over the epochs
after each fit's first (warm-up: cuDNN kernel choice, loader workers). Only the training batches
are timed, with one ``torch.cuda.synchronize`` before the first and after the last batch of an
epoch; images/s = images trained / that time.

- compute-bound: the batches are made once and already on the GPU (loading costs nothing), so the
  figure is the loop's own cost against the plain loop's.
- data-bound: JPEGs decoded from a folder every epoch (``--cache none``): learnkit's
  ``ImageDataBunch`` against a plain ``torch.utils.data.DataLoader`` doing the same work (PIL
  decode, bilinear resize to the input size, uint8 tensor, pinned memory, normalised on the GPU,
  no augmentation on either side, the same worker count). Where the time goes: the loaders alone
  (one pass, no model) and the compute-bound figure beside them.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Row, interleave, log, median
from bench.loop_overhead import _loader

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SpeedPlan:
    device: str
    size: int
    bs: int
    steps: int  # batches per epoch in the compute-bound case
    epochs: int
    rounds: int
    data_epochs: int
    data_rounds: int
    workers: int


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _TrainClock:
    """Seconds of each epoch's training batches (sync before the first and after the last)."""

    order = 10**9

    def __init__(self, device) -> None:
        self.device, self.times = device, []

    def on_epoch_begin(self, state) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def on_batch_end(self, state) -> None:
        if state.train and state.num_batch == state.n_batches - 1:
            _sync(self.device)
            self.times.append(time.perf_counter() - self._start)


def learnkit_fit(model, data, epochs: int, device) -> list[float]:
    """``Learner.fit_one_cycle`` (Recorder, no metrics), bf16 + channels-last; epoch seconds."""
    from learnkit import Learner

    learn = Learner(data, model).to_bf16().to_channels_last()
    clock = _TrainClock(device)
    learn.fit_one_cycle(epochs, 1e-3, callbacks=[clock])
    return clock.times


def plain_fit(model, train_dl, epochs: int, device, normalize: bool) -> list[float]:
    """The hand-written loop: AdamW + OneCycleLR (fastai's values), bf16 autocast, channels-last
    model, losses kept on the device, one validation-free sync per epoch; epoch seconds."""
    import torch
    from torch import nn

    model = model.to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.95, 0.99), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-3, total_steps=epochs * len(train_dl), pct_start=0.3, div_factor=25.0,
        final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95,
    )  # fmt: skip
    loss_func = nn.CrossEntropyLoss()
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    times = []
    for _ in range(epochs):
        model.train()
        total = torch.zeros((), device=device)
        _sync(device)
        start = time.perf_counter()
        for xb, yb in train_dl:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if normalize:
                xb = (xb.float() / 255 - mean) / std
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()
            sched.step()
            total += loss.detach()
        _sync(device)
        times.append(time.perf_counter() - start)
        float(total)  # the epoch's one read of the loss
    return times


def _resnet50(n_out: int):
    import torchvision

    return torchvision.models.resnet50(num_classes=n_out)


def compute_bound(plan: SpeedPlan) -> tuple[list[Row], float]:
    """resnet50 on batches already on the device; also returns learnkit's images/s."""
    import torch

    from learnkit import DataBunch

    device = torch.device(plan.device)
    log(f"gpu: compute-bound resnet50 {plan.size}px bs {plan.bs}, {plan.rounds} round(s) ...")
    g = torch.Generator(device="cpu").manual_seed(0)
    distinct = [
        (torch.randn(plan.bs, 3, plan.size, plan.size, generator=g).to(device),
         torch.randint(0, 10, (plan.bs,), generator=g).to(device))
        for _ in range(4)
    ]  # fmt: skip
    train = [distinct[i % 4] for i in range(plan.steps)]
    torch.manual_seed(0)
    initial = _resnet50(10).to(device)

    def mine() -> list[float]:
        data = DataBunch(_loader(train), _loader(distinct[:1]), classes=[str(i) for i in range(10)],
                         device=device)  # fmt: skip
        return learnkit_fit(copy.deepcopy(initial), data, plan.epochs, device)[1:]

    def plain() -> list[float]:
        return plain_fit(copy.deepcopy(initial), _loader(train), plan.epochs, device, normalize=False)[1:]

    res = interleave({"learnkit": mine, "plain": plain}, plan.rounds)
    images = plan.steps * plan.bs
    rate = {k: images / median(t for fit in fits for t in fit) for k, fits in res.items()}
    ratio = rate["learnkit"] / rate["plain"]
    paired = [median(p) / median(m) for m, p in zip(res["learnkit"], res["plain"])]
    note = (
        f"{plan.steps} batches an epoch, {plan.epochs - 1} timed epoch(s) x {plan.rounds} round(s); "
        f"per-round ratios {' '.join(f'{r:.3f}' for r in paired)}; cudnn.benchmark "
        f"{torch.backends.cudnn.benchmark} on both sides"
    )
    row = Row("gpu", f"resnet50 {plan.size}px bs{plan.bs} bf16+CL, on device", "img/s", rate["learnkit"],
              rate["plain"], ratio, ">= 0.95", ratio >= 0.95, note, {"seconds": res})  # fmt: skip
    return [row], rate["learnkit"]


class PlainFolder:
    """``root/train/<class>/*.jpg`` read the plain way: PIL decode, RGB, bilinear resize, uint8 CHW."""

    def __init__(self, root: Path, size: int) -> None:
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        self.items = [(f, i) for i, c in enumerate(classes) for f in sorted((root / "train" / c).iterdir())]
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        import numpy as np
        import torch
        from PIL import Image

        path, label = self.items[i]
        with Image.open(path) as img:
            img = img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
            x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
        return x, label


def _one_pass(dl, device) -> float:
    """Seconds to read every batch of ``dl`` onto ``device`` (no model)."""
    _sync(device)
    start = time.perf_counter()
    for xb, _ in dl:
        xb.to(device, non_blocking=True)
    _sync(device)
    return time.perf_counter() - start


def data_bound(plan: SpeedPlan, folder: Path, compute_rate: float) -> list[Row]:
    """resnet50 fed by JPEG decoding each epoch: learnkit's loaders against a plain DataLoader."""
    import torch
    from torch.utils.data import DataLoader

    from learnkit.data import ImageDataBunch

    device = torch.device(plan.device)
    log(f"gpu: data-bound, JPEGs from {folder} with {plan.workers} worker(s) ...")
    build_start = time.perf_counter()
    data = ImageDataBunch.from_folder(folder, size=plan.size, bs=plan.bs, num_workers=plan.workers,
                                      augment=False, cache="none", device=device)  # fmt: skip
    build = time.perf_counter() - build_start
    n_train = len(data.train_dl.dataset)
    plain_ds = PlainFolder(folder, plan.size)
    plain_dl = DataLoader(plain_ds, batch_size=plan.bs, shuffle=True, num_workers=plan.workers,
                          pin_memory=device.type == "cuda", persistent_workers=plan.workers > 0)  # fmt: skip
    torch.manual_seed(0)
    initial = _resnet50(data.c).to(device)

    def mine() -> list[float]:
        return learnkit_fit(copy.deepcopy(initial), data, plan.data_epochs, device)[1:]

    def plain() -> list[float]:
        return plain_fit(copy.deepcopy(initial), plain_dl, plan.data_epochs, device, normalize=True)[1:]

    res = interleave({"learnkit": mine, "plain": plain}, plan.data_rounds)
    rate = {k: n_train / median(t for fit in fits for t in fit) for k, fits in res.items()}
    read = {
        "learnkit": n_train / _one_pass(data.train_dl, device),
        "plain": n_train / _one_pass(plain_dl, device),
    }
    ratio = rate["learnkit"] / rate["plain"]
    note = (
        f"{n_train} JPEGs an epoch; loaders alone (no model): learnkit {read['learnkit']:.0f} img/s, "
        f"plain {read['plain']:.0f} img/s; compute alone {compute_rate:.0f} img/s; "
        f"learnkit builds its data set (header check of every file) in {build:.1f} s, untimed above"
    )
    extra: dict[str, Any] = {"seconds": res, "loader_only": read, "build_s": build, "workers": plan.workers}
    return [Row("gpu", f"resnet50 {plan.size}px bs{plan.bs} bf16+CL, JPEG folder", "img/s", rate["learnkit"],
                rate["plain"], ratio, "report", None, note, extra)]  # fmt: skip
