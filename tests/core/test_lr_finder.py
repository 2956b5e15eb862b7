"""The LR range test: its lr curve, its stops, the exact restore on every exit, the suggestions
and the plot."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from PIL import Image

from learnkit import Callback, Learner
from learnkit.callbacks.lr_finder import LearnerSnapshot, LRFinder, lr_find
from learnkit.errors import UsageError
from learnkit.lr_suggest import SuggestedLRs, minimum, steep, suggest_lrs, trim_curve, valley
from tests.core.tiny import tiny_data, tiny_model


def _learner(path, **kwargs):
    return Learner(tiny_data(n=64, bs=16), tiny_model(), path=path, **kwargs)


def _same(a, b, where="state"):
    """Bit-for-bit equality of nested optimizer/recorder states."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.device == b.device and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def _everything(learn):
    """What lr_find must leave as it found it."""
    # the trace is lr_find's output; lrs/losses show it until the next fit (fastai v1), so the
    # run's own are compared through state_dict (what checkpoints keep)
    skip = ("learn", "smoother", "_start", "lr_find_lrs", "lr_find_losses", "lrs", "losses", "_run_curve")
    rec = {k: v for k, v in vars(learn.recorder).items() if k not in skip}
    rec["run_curve"] = {k: v for k, v in learn.recorder.state_dict().items() if k in ("lrs", "losses")}
    return copy.deepcopy(
        {
            "model": dict(learn.model.state_dict()),
            "opt": learn.opt.state_dict() if learn.opt is not None else None,
            "position": (learn.epoch, learn.iteration, learn.batch),
            "recorder": rec,
            "smoother": (learn.recorder.smoother.n, learn.recorder.smoother.mov_avg),
            "rng": torch.get_rng_state(),
        }
    )


def test_restores_everything_bit_for_bit_and_writes_nothing(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(1, 1e-2)
    before = _everything(learn)
    res = learn.lr_find(num_it=20)
    _same(_everything(learn), before)
    assert learn.opt.lrs == [1e-2] and learn.opt.wd == 0.01
    assert list(tmp_path.iterdir()) == []  # no temp checkpoint, no plot unless asked
    assert isinstance(res, SuggestedLRs) and set(dict(res)) == {"steep", "minimum", "valley"}
    assert res["valley"] == res.valley > 0


def test_lr_find_then_fit_equals_fit_alone(tmp_path):
    alone = _learner(tmp_path)
    alone.fit(2, 1e-2)
    after = _learner(tmp_path)
    after.lr_find(num_it=10)
    after.fit(2, 1e-2)
    for key, value in alone.model.state_dict().items():
        assert torch.equal(after.model.state_dict()[key], value), key
    assert after.recorder.lrs == alone.recorder.lrs and after.recorder.losses == alone.recorder.losses


def test_no_optimizer_before_means_none_after(tmp_path):
    learn = _learner(tmp_path)
    assert learn.opt is None
    learn.lr_find(num_it=8)
    assert learn.opt is None and learn.epoch == learn.iteration == 0
    assert learn.recorder.state_dict()["lrs"] == [] and learn.recorder.lrs == learn.recorder.lr_find_lrs


class _Boom(Callback):
    def __init__(self, exc, at=5):
        self.exc, self.at, self.n = exc, at, 0

    def on_backward_end(self, state):  # after the backward pass, before the step: grads are set
        self.n += 1
        if self.n == self.at:
            raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_restores_on_an_exception_from_a_callback(tmp_path, exc):
    learn = _learner(tmp_path)
    learn.fit(1, 1e-2)
    before = _everything(learn)
    grads = [p.grad for p in learn.model.parameters()]
    learn.callbacks.append(_Boom(exc))
    with pytest.raises(type(exc)):
        learn.lr_find(num_it=30)
    _same(_everything(learn), before)
    assert [p.grad for p in learn.model.parameters()] == grads  # None, as before
    assert learn.model.training is False  # validate() left it in eval mode; so does lr_find
    assert list(tmp_path.iterdir()) == []


def test_the_curve_is_exponential_and_cycles_the_data(tmp_path):
    learn = _learner(tmp_path)  # 4 batches an epoch: 10 iterations need 3 epochs
    finder = LRFinder(learn, 1e-5, 1e-1, num_it=10, stop_div=False)
    snap = LearnerSnapshot(learn)
    try:
        learn._prepare_opt(finder.start_lrs, None)
        learn._run(3, callbacks=[finder], metrics=[])
    finally:
        snap.restore()
    assert finder.stop_reason == "num_it"
    assert finder.lrs == pytest.approx([1e-5 * 10 ** (4 * i / 10) for i in range(10)], rel=1e-12)
    assert len(finder.losses) == 10 and all(math.isfinite(x) for x in finder.losses)
    assert learn.opt is None and learn.epoch == 0


def test_stops_when_the_loss_diverges(tmp_path):
    learn = Learner(
        tiny_data(n=64, bs=16), tiny_model(), path=tmp_path, opt_func=torch.optim.SGD, true_wd=False, wd=0.0
    )
    learn.lr_find(start_lr=1e-3, end_lr=1e8, num_it=100)
    n = len(learn.recorder.lr_find_lrs)
    assert 1 < n < 100
    last = learn.recorder.lr_find_losses[-1]
    assert not math.isfinite(last) or last > 4 * min(learn.recorder.lr_find_losses[:-1])


def test_smoothing_is_the_recorders(tmp_path):
    learn = _learner(tmp_path)
    raw = []

    class Raw(Callback):
        def on_backward_begin(self, state):
            raw.append(state.last_loss.item())

    learn.callbacks.append(Raw())
    learn.lr_find(num_it=6, stop_div=False)
    avg, want = 0.0, []
    for i, v in enumerate(raw, 1):
        avg = 0.98 * avg + 0.02 * v
        want.append(avg / (1 - 0.98**i))
    assert learn.recorder.lr_find_losses == pytest.approx(want, rel=1e-5)


def test_plot_saves_a_png_with_the_suggestions(tmp_path):
    learn = _learner(tmp_path)
    with pytest.raises(UsageError):
        learn.recorder.plot()
    res = learn.lr_find(num_it=40, stop_div=False)
    rec = learn.recorder
    assert res == suggest_lrs(rec.lr_find_lrs, rec.lr_find_losses, skip_start=10, skip_end=5)
    path = rec.plot()
    assert path == tmp_path / "plots" / "lr_find.png"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 300 and img.height > 200
    assert rec.plot(skip_start=0, skip_end=0, suggestion=False, name="raw").name == "raw.png"


def test_bad_arguments(tmp_path):
    learn = _learner(tmp_path)
    with pytest.raises(UsageError):
        lr_find(learn, num_it=0)
    with pytest.raises(UsageError):
        lr_find(learn, start_lr=0.0)


# --- suggestions on synthetic curves (pure functions) ---

LRS = [10 ** (-6 + i / 10) for i in range(61)]  # 1e-6 .. 1, ten points a decade


def _curve(i):
    """Flat at 2 up to i = 20, a cosine descent to 1 at i = 40 (steepest at i = 30, lr 1e-3),
    then rising by 0.2 a point."""
    if i < 20:
        return 2.0
    if i <= 40:
        return 1.5 + 0.5 * math.cos(math.pi * (i - 20) / 20)
    return 1.0 + (i - 40) * 0.2


def test_suggestions_on_a_synthetic_curve():
    losses = [_curve(i) for i in range(61)]
    assert steep(LRS, losses, window=1) == steep(LRS, losses) == pytest.approx(1e-3)
    assert minimum(LRS, losses) == pytest.approx(LRS[40] / 10)
    # falling (central differences) at i = 20 .. 39: the middle is i = 29
    assert valley(LRS, losses, window=1) == pytest.approx(LRS[29])
    res = suggest_lrs(LRS, losses)  # points 10 .. 55; 46 points: slopes over 2 each side
    assert res.steep == pytest.approx(1e-3) and res.minimum == pytest.approx(1e-3)
    assert res.valley == pytest.approx(LRS[28])  # falling at i = 19 .. 38
    assert res.lr == res.valley and res.to_dict() == dict(res)


def test_a_jump_in_the_flat_start_does_not_win():
    losses = [_curve(i) + (0.2 if i < 5 else 0.0) for i in range(61)]
    assert steep(LRS, losses, window=1) < 1e-5  # plain central differences: the jump (i = 4 or 5)
    assert steep(LRS, losses) == pytest.approx(1e-3)  # over 3 points each side: the descent
    assert valley(LRS, losses) == pytest.approx(LRS[27])  # falls at i = 18 .. 37; the jump only at 2 .. 7


def test_valley_spans_a_bump_and_ignores_non_finite_points():
    lrs = [10.0**k for k in range(-6, 2)]
    # central differences fall at i = 0 .. 4 despite the bump (2.5 -> 2.6); the NaN is dropped
    assert valley(lrs, [3.0, 2.5, 2.6, 2.0, 1.0, 0.9, 5.0, float("nan")], window=1) == 1e-4
    assert valley(lrs, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]) == 1e-6  # never falls: the lowest
    assert minimum(lrs, [3.0, 2.0, 1.0, float("inf"), float("nan"), 9.0, 9.0, 9.0]) == pytest.approx(1e-5)


def test_trim_curve_keeps_enough_points():
    xs = list(range(30))
    assert trim_curve(xs, xs)[0] == list(range(10, 25))
    assert trim_curve(xs[:14], xs[:14])[0] == list(range(10, 14))  # no room for skip_end: kept
    assert trim_curve(xs[:5], xs[:5])[0] == [2, 3, 4]
    assert trim_curve([7], [1.0]) == ([7], [1.0])
    with pytest.raises(ValueError):
        trim_curve([1, 2], [1.0])
