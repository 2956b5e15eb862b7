"""1cycle through a real fit: the Recorder's trace against hand-computed values, torch's
OneCycleLR, and a resumed cycle against an uninterrupted one."""

from __future__ import annotations

import math

import pytest
import torch

from learnkit import Callback, CancelFit, Learner
from learnkit.callbacks import one_cycle
from learnkit.callbacks.one_cycle import OneCycleScheduler, one_cycle_plan, resolve_cycle
from learnkit.errors import UsageError
from tests.core.tiny import tiny_data, tiny_model


def cos(s, e, p):
    return e + (s - e) / 2 * (1 + math.cos(math.pi * p))


def _learner(path=".", groups=1, opt_func=None, seed=0, shuffle=True):
    kw = {"opt_func": opt_func} if opt_func is not None else {}
    learn = Learner(tiny_data(n=64, bs=8, shuffle=shuffle), tiny_model(seed=seed), path=path, **kw)
    if groups == 2:
        learn.split(lambda m: [m[:2], m[2:]])
    return learn


def _want_lr(k, max_lr, n=24, a1=7):
    """fastai v1's lr of batch k (0-based) of a cycle of n batches, div_factor 25."""
    if k < a1:
        return cos(max_lr / 25, max_lr, k / a1)
    return cos(max_lr, max_lr / 25e4, (k - a1) / (n - a1))


def _want_mom(k, n=24, a1=7):
    return cos(0.95, 0.85, k / a1) if k < a1 else cos(0.85, 0.95, (k - a1) / (n - a1))


CHOSEN = (0, 3, 7, 12, 23)  # first, warming up, peak, annealing, last


def test_float_max_lr_trace_by_hand():
    learn = _learner()
    learn.fit_one_cycle(3, 1e-2)  # 8 batches x 3 epochs: n = 24, a1 = int(24 * 0.3) = 7
    rec = learn.recorder
    assert len(rec.lrs) == len(rec.moms) == 24
    # 0: max_lr / 25; 3: pct 3/7 of the warm-up; 7: the peak; 23: pct 16/17 of the annealing to 1e-2 / 25e4
    hand = {
        0: 4e-4,
        3: 1e-2 - 4.8e-3 * (1 + 0.2225209340),
        7: 1e-2,
        23: 4e-8 + (1e-2 - 4e-8) / 2 * 0.0170269003,
    }
    for k, lr in hand.items():
        assert rec.lrs[k] == pytest.approx(lr, rel=1e-8), k
    for k in CHOSEN:
        assert rec.lrs[k] == pytest.approx(_want_lr(k, 1e-2), rel=1e-9), k
        assert rec.moms[k] == pytest.approx(_want_mom(k), rel=1e-9), k
    assert rec.moms[0] == pytest.approx(0.95) and rec.moms[7] == pytest.approx(0.85)
    assert learn.opt.lr == pytest.approx(4e-8) and learn.opt.mom == pytest.approx(0.95)  # "after the last"
    assert rec.schedule["kind"] == "one_cycle" and rec.schedule["tot_epochs"] == 3


@pytest.mark.parametrize(
    "max_lr, peaks",
    [([1e-3, 1e-2], [1e-3, 1e-2]), (slice(1e-2), [1e-3, 1e-2]), (slice(1e-4, 1e-2), [1e-4, 1e-2])],
)
def test_per_group_max_lr_trace_by_hand(max_lr, peaks):
    learn = _learner(groups=2)
    learn.fit_one_cycle(3, max_lr)
    rec = learn.recorder
    assert len(rec.group_lrs) == 24
    for k in CHOSEN:
        assert rec.group_lrs[k] == pytest.approx([_want_lr(k, m) for m in peaks], rel=1e-9), k
        assert rec.lrs[k] == pytest.approx(_want_lr(k, peaks[-1]), rel=1e-9)
    # both parameter groups of a layer group (weights; norm layers + biases) get its lr
    assert [g["lr"] for g in learn.opt.param_groups] == pytest.approx(
        [p / 25e4 for p in peaks for _ in (0, 1)]
    )


def test_sgd_momentum_and_torch_reference():
    """With SGD the momentum is scheduled; the trace equals torch's OneCycleLR run on a cycle one
    step longer with the peak one step later (see test_schedules for why)."""
    learn = _learner(opt_func=lambda groups, lr: torch.optim.SGD(groups, lr=lr, momentum=0.9))
    learn.fit_one_cycle(3, 0.1, pct_start=0.25)  # n = 24, a1 = 6
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=25, pct_start=7 / 25)
    want_lrs, want_moms = [], []
    for _ in range(24):
        want_lrs.append(opt.param_groups[0]["lr"])
        want_moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    assert learn.recorder.lrs == pytest.approx(want_lrs, rel=1e-6)
    assert learn.recorder.moms == pytest.approx(want_moms, rel=1e-6)
    assert learn.opt.param_groups[0]["momentum"] == pytest.approx(0.95)


def test_dry_run_plan_equals_the_recorded_trace():
    learn = _learner(groups=2)
    plan = one_cycle_plan(learn, 3, slice(1e-3), pct_start=0.4)
    learn.fit_one_cycle(3, slice(1e-3), pct_start=0.4)
    assert plan.group_lrs == learn.recorder.group_lrs
    assert plan.moms == learn.recorder.moms


def test_a_plan_too_long_to_list_is_refused_at_once(monkeypatch):
    learn = _learner()  # 8 batches an epoch
    with pytest.raises(UsageError, match=f"{2**70} epochs of 8 batches is more than 1,000,000"):
        one_cycle_plan(learn, 2**70, 1e-3)  # before: listed batches until the memory ran out
    monkeypatch.setattr(one_cycle, "MAX_PLAN_ITERATIONS", 80)
    assert len(one_cycle_plan(learn, 10, 1e-3).lrs) == 80
    with pytest.raises(UsageError, match="11 epochs of 8 batches is more than 80"):
        one_cycle_plan(learn, 11, 1e-3)


def test_resumed_cycle_equals_the_uninterrupted_one(tmp_path):
    straight = _learner(tmp_path)
    straight.fit_one_cycle(3, 1e-2)

    first = _learner(tmp_path)
    first.fit_one_cycle(1, 1e-2, tot_epochs=3)  # epoch 0 of a 3-epoch cycle
    assert first.recorder.lrs == straight.recorder.lrs[:8]
    first.save("e1")

    resumed = _learner(tmp_path, seed=1).load("e1")
    assert (resumed.epoch, resumed.iteration) == (1, 8)
    assert resolve_cycle(resumed, 2) == (1, 3)  # the default continues the recorded cycle
    assert one_cycle_plan(resumed, 2, 1e-2).lrs == straight.recorder.lrs[8:]
    resumed.fit_one_cycle(2, 1e-2)
    assert resumed.recorder.lrs == straight.recorder.lrs
    assert resumed.recorder.moms == straight.recorder.moms
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_resumed_mid_epoch_continues_the_cycle(tmp_path):
    """A checkpoint taken at batch 4 of epoch 1 (as an interrupted run leaves one) continues the
    same cycle from the fifth batch of that epoch."""
    straight = _learner(tmp_path, shuffle=False)
    straight.fit_one_cycle(3, 1e-2)

    class SaveAndStop(Callback):
        def on_batch_end(self, state):
            if state.train and state.iteration == 12:
                state.learn.save("mid")
                raise CancelFit()

    first = _learner(tmp_path, shuffle=False)
    first.fit_one_cycle(3, 1e-2, callbacks=[SaveAndStop()])
    resumed = _learner(tmp_path, shuffle=False, seed=1).load("mid")
    assert (resumed.epoch, resumed.batch, resumed.iteration) == (1, 4, 12)
    resumed.fit_one_cycle(2, 1e-2)
    assert resumed.recorder.lrs == straight.recorder.lrs
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_explicit_start_epoch_and_a_new_cycle_after_a_finished_one():
    straight = _learner()
    straight.fit_one_cycle(3, 1e-2)
    part = _learner()
    part.fit(1, 1e-3)  # some other training first: epoch 1 of the run
    part.fit_one_cycle(2, 1e-2, tot_epochs=3, start_epoch=1)
    assert part.recorder.lrs[8:] == straight.recorder.lrs[8:]
    # the cycle is finished: the next fit_one_cycle is a new cycle (fastai's stage-2 workflow)
    assert resolve_cycle(straight, 2) == (0, 2)
    straight.fit_one_cycle(1, 1e-3)
    assert straight.recorder.lrs[24] == pytest.approx(1e-3 / 25)


def test_a_new_cycle_when_cyc_len_is_not_the_remainder(tmp_path):
    learn = _learner(tmp_path)
    learn.fit_one_cycle(1, 1e-2, tot_epochs=3)
    assert resolve_cycle(learn, 2) == (1, 3)
    assert resolve_cycle(learn, 5) == (0, 5)  # not the 2 epochs left: a new cycle
    assert resolve_cycle(learn, 1, tot_epochs=3) == (1, 3)  # part of what is left
    assert resolve_cycle(learn, 2, start_epoch=0) == (0, 2)  # explicit wins
    learn.fit(1, 1e-3)  # another kind of fit in between: the cycle is not continued
    assert learn.recorder.schedule is None and resolve_cycle(learn, 1) == (0, 1)


def test_bad_cycle_arguments():
    learn = _learner()
    with pytest.raises(UsageError):
        learn.fit_one_cycle(3, 1e-2, tot_epochs=2)
    with pytest.raises(UsageError):
        learn.fit_one_cycle(0, 1e-2)
    with pytest.raises(UsageError):
        resolve_cycle(learn, 2, start_epoch=-1)


def test_scheduler_as_a_plain_callback():
    learn = _learner()
    learn.fit(1, 1.0, callbacks=[OneCycleScheduler(learn, 1e-2, tot_epochs=3)])
    assert learn.recorder.lrs == pytest.approx([_want_lr(k, 1e-2) for k in range(8)], rel=1e-9)
