"""The loop adds no per-batch host-device synchronisation and calls no callback method it need not.

A sync is what a GPU run waits on: ``.item()``, ``float(t)``, ``int(t)``, ``bool(t)``, ``.tolist()``,
``.cpu()``, ``.numpy()`` on a device tensor. On the CPU they cost nothing, but the calls are the
same, so counting the calls learnkit's own code makes finds here what would stall a GPU.
"""

from __future__ import annotations

import io
import sys
from functools import partial

import pytest
import torch
from rich.console import Console
from torch import nn

from learnkit import Callback, CallbackHandler, Event, Learner, accuracy
from learnkit.callbacks.progress import ProgressCallback
from learnkit.callbacks.tracking import SaveModelCallback
from learnkit.cli.progress import Reporter
from learnkit.optim import OptimWrapper
from tests.core.tiny import tiny_data, tiny_model

SYNCS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


class _Window(Callback):
    """Opens (order first) or closes (order last) the counting window around each training batch."""

    def __init__(self, counter: dict, is_open: bool, order: int) -> None:
        self.counter, self.is_open, self.order = counter, is_open, order

    def on_batch_begin(self, state) -> None:
        if state.train and self.is_open:
            self.counter["open"] = True

    def on_batch_end(self, state) -> None:
        if state.train and not self.is_open:
            self.counter["open"] = False
            self.counter["batches"] += 1


@pytest.fixture
def syncs(monkeypatch) -> dict:
    """Counts the sync calls made from learnkit's modules: in all, and inside training batches."""
    counter = {"all": 0, "in_batch": 0, "open": False, "batches": 0, "where": []}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1)
            if caller.f_globals.get("__name__", "").startswith("learnkit"):
                counter["all"] += 1
                if counter["open"]:
                    counter["in_batch"] += 1
                    counter["where"].append(f"{_name} in {caller.f_code.co_qualname}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counter


def _cli_like_fit(counter: dict, tmp_path, n: int, epochs: int = 2) -> Learner:
    """A 1cycle fit with what the command line attaches: metrics, the Recorder, progress, checkpoints."""
    learn = Learner(tiny_data(n=n, bs=8), tiny_model(), metrics=[accuracy], path=tmp_path)
    console = Console(file=io.StringIO(), width=100)
    callbacks = [
        _Window(counter, True, order=-(10**9)),
        SaveModelCallback(learn, every="epoch", name="last", rolling=True),
        ProgressCallback(Reporter(console, console, live=False)),
        _Window(counter, False, order=10**9),
    ]
    learn.fit_one_cycle(epochs, 1e-2, callbacks=callbacks)
    return learn


def test_no_sync_inside_training_batches(syncs, tmp_path):
    learn = _cli_like_fit(syncs, tmp_path, n=64)
    assert syncs["batches"] == 16 and len(learn.recorder.losses) == 16
    assert syncs["in_batch"] == 0, syncs["where"]


def test_syncs_per_fit_do_not_grow_with_the_batches(syncs, tmp_path):
    """Twice the batches (train and valid) cost exactly the same number of syncs: all are per epoch."""
    _cli_like_fit(syncs, tmp_path / "a", n=32)
    few = syncs["all"]
    syncs["all"] = 0
    _cli_like_fit(syncs, tmp_path / "b", n=128)
    assert syncs["all"] == few


def test_the_handler_never_calls_a_method_a_callback_does_not_define(monkeypatch):
    """The base class's empty methods are never dispatched: the handler lists only overrides."""
    called = []
    for event in Event:
        monkeypatch.setattr(Callback, event.value, lambda self, state, _e=event: called.append(_e))

    class EpochsOnly(Callback):
        def __init__(self):
            self.epochs = 0

        def on_epoch_end(self, state):
            self.epochs += 1

    only = EpochsOnly()
    learn = Learner(tiny_data(), tiny_model())
    learn.fit(2, 1e-3, callbacks=[only])
    assert only.epochs == 2 and called == []
    cbh = CallbackHandler([only])
    assert [e for e in Event if cbh.listens(e)] == [Event.epoch_end]


def test_a_training_batch_dispatches_only_to_listeners():
    """The per-batch events of a fit reach only the callbacks that handle them."""
    learn = Learner(tiny_data(), tiny_model(), metrics=[accuracy])
    seen = []

    class Spy(CallbackHandler):
        def __call__(self, event):
            seen.append((event, len(self._listeners[event])))
            super().__call__(event)

    import learnkit.learner as learner_module

    original = learner_module.CallbackHandler
    learner_module.CallbackHandler = Spy
    try:
        learn.fit(1, 1e-3)
    finally:
        learner_module.CallbackHandler = original
    per_batch = {e: n for e, n in seen if e in (Event.loss_begin, Event.backward_end, Event.step_end)}
    assert per_batch == {Event.loss_begin: 0, Event.backward_end: 0, Event.step_end: 0}


def test_decoupled_weight_decay_inside_adam_equals_adamw():
    """``true_wd`` with Adam lets the optimizer decay (no extra pass): the same steps as AdamW."""
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3), nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    mine = OptimWrapper(partial(torch.optim.Adam, betas=(0.9, 0.99)), [a], lr=1e-2, wd=0.1)
    assert mine.param_groups[0]["decoupled_weight_decay"] and mine.param_groups[0]["weight_decay"] == 0.1
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1)
    x = torch.randn(8, 5)
    for _ in range(5):
        for model, opt in ((a, mine), (b, ref)):
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_the_default_optimizer_is_fused_on_the_cpu_and_steps_as_adamw():
    """learnkit's default ``opt_func`` takes torch's fused Adam kernel on the CPU (one pass for all
    tensors): the same steps as the per-tensor AdamW with fastai's betas, within float rounding."""
    from learnkit.optim import AdamW

    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 3))
    b = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 3))
    b.load_state_dict(a.state_dict())
    mine = OptimWrapper(AdamW, [a], lr=1e-2, wd=0.1, bn_wd=False)  # two groups, fastai style
    assert all(g["fused"] for g in mine.param_groups)
    decayed = [p for name, p in b.named_parameters() if p.ndim > 1]  # bn_wd=False: not norm, not bias
    others = [p for name, p in b.named_parameters() if p.ndim <= 1]
    groups = [{"params": decayed}, {"params": others, "weight_decay": 0.0}]
    ref = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.1, foreach=False)
    x = torch.randn(8, 5)
    for _ in range(5):
        for model, opt in ((a, mine), (b, ref)):
            model(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    assert not AdamW([torch.zeros(2, dtype=torch.long)], foreach=True).defaults["fused"]
    assert len(AdamW(nn.Linear(2, 2).parameters()).param_groups[0]["params"]) == 2  # a generator, read once


def test_a_loaded_state_takes_its_channels_last_weights_layout_so_fused_steps_stay_right():
    """torch's fused Adam walks a weight and its moments as flat memory: moments loaded in NCHW order
    beside a channels-last weight gave wrong updates silently. Loading aligns them, as does
    ``Learner.to_channels_last`` after a fit."""
    from learnkit.optim import AdamW

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    ref = nn.Conv2d(3, 4, 3)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 6, 6)
    for model in (conv, ref):  # one step each, then the state goes through a save (contiguous) and load
        opt = OptimWrapper(AdamW, [model], lr=1e-1, wd=0.0)
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        state = opt.state_dict()
        for s in state["state"].values():
            for key in ("exp_avg", "exp_avg_sq"):
                s[key] = s[key].contiguous()
        if model is conv:
            model.to(memory_format=torch.channels_last)
        opt = OptimWrapper(AdamW, [model], lr=1e-1, wd=0.0)
        opt.load_state_dict(state)
        model(x).square().mean().backward()
        opt.step()
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(conv.weight, ref.weight, atol=1e-5)


def test_without_true_wd_adamw_decays_by_l2():
    opt = OptimWrapper(torch.optim.AdamW, [nn.Linear(2, 2)], lr=1e-2, wd=0.1, true_wd=False)
    assert all(not g["decoupled_weight_decay"] and g["weight_decay"] == 0.1 for g in opt.param_groups)


def test_per_batch_copies_to_the_device_do_not_block(monkeypatch):
    """Augmentation and mixup draw on the CPU; their copies to the device must not wait for it.

    A blocking copy to a GPU first waits for the previous batch's kernels. The "meta" device stands
    in for a GPU here: every CPU -> other-device copy that learnkit makes is recorded.
    """
    from learnkit.callback import RunState
    from learnkit.callbacks.mixup import MixUpCallback
    from learnkit.data.augment import Augment

    copies = []
    original = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("learnkit") and self.device.type == "cpu" and out.device.type == "meta":
            copies.append((caller, kwargs.get("non_blocking", False)))
        return out

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    x, y = torch.empty(4, 3, 8, 8, device="meta"), torch.empty(4, dtype=torch.long, device="meta")
    Augment(seed=0)(x, y)
    Augment(seed=0, max_zoom=1.0)(x, y)
    for stack in (True, False):
        learn = Learner(tiny_data(), tiny_model())
        state = RunState(train=True, last_input=x, last_target=y)
        MixUpCallback(learn, stack_x=stack, stack_y=stack).on_batch_begin(state)
    assert len(copies) >= 4 and all(non_blocking for _, non_blocking in copies), copies
