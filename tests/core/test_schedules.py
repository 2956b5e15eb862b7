"""Pure schedules against values computed by hand, and 1cycle against torch's OneCycleLR."""

from __future__ import annotations

import math

import pytest
import torch

from learnkit.schedules import (
    OneCycleSchedule,
    Phase,
    annealing_cos,
    annealing_exp,
    annealing_linear,
    annealing_no,
    annealing_poly,
    one_cycle_phases,
    schedule_value,
    simulate_one_cycle,
)


def test_annealing_functions_by_hand():
    assert annealing_no(3.0, 5.0, 0.7) == 3.0
    assert annealing_linear(2.0, 4.0, 0.25) == 2.5
    assert annealing_exp(1e-3, 1e-1, 0.5) == pytest.approx(1e-2)
    assert annealing_exp(1e-7, 10.0, 0.0) == 1e-7
    # cos: end + (start - end) / 2 * (1 + cos(pi * pct))
    assert annealing_cos(1.0, 0.0, 0.0) == 1.0
    assert annealing_cos(1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert annealing_cos(1.0, 0.0, 1.0) == pytest.approx(0.0)
    assert annealing_cos(0.0, 1.0, 0.25) == pytest.approx(1 - 0.5 * (1 + math.sqrt(0.5)))
    assert annealing_poly(2)(1.0, 0.0, 0.5) == 0.25


def test_phases_run_one_after_the_other():
    phases = [Phase(0, 9.0, 9.0), Phase(2, 0.0, 1.0, annealing_linear), Phase(4, 1.0, 3.0, annealing_linear)]
    # batch k (0-based) of a phase of m iterations is at pct = k / m; zero-length phases are skipped
    assert [schedule_value(phases, i) for i in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert schedule_value(phases, 6) == schedule_value(phases, 99) == 3.0  # done: the last end
    with pytest.raises(ValueError):
        schedule_value(phases, -1)


def test_one_cycle_phase_lengths():
    assert one_cycle_phases(24, 0.3) == (7, 17)
    assert one_cycle_phases(10, 0.25) == (2, 8)
    assert one_cycle_phases(5, 0.0) == (0, 5)
    with pytest.raises(ValueError):
        one_cycle_phases(5, 1.5)


def test_one_cycle_schedule_by_hand():
    s = OneCycleSchedule(n_iter=10, max_lrs=(1.0,), div_factor=10.0, pct_start=0.3)
    # a1 = 3: 0.1 -> 1.0 by cosine at pct 0, 1/3, 2/3; then a2 = 7 from 1.0 to 1.0 / (10 * 1e4)
    want = [0.1, 1 - 0.45 * 1.5, 1 - 0.45 * 0.5, 1.0]
    want += [1e-5 + (1 - 1e-5) / 2 * (1 + math.cos(math.pi * k / 7)) for k in range(1, 7)]
    got = [s.lrs_at(i)[0] for i in range(10)]
    assert got == pytest.approx(want, rel=1e-12)
    assert s.lrs_at(10) == [pytest.approx(1e-5)]  # left in the optimizer after the last batch
    moms = [s.mom_at(i) for i in (0, 1, 3, 10)]
    assert moms == pytest.approx([0.95, 0.85 + 0.05 * 1.5, 0.85, 0.95])
    trace = s.simulate()
    assert trace.lrs == got and len(trace.moms) == 10 and trace.group_lrs[0] == [got[0]]


def test_final_div_and_groups():
    s = OneCycleSchedule(n_iter=4, max_lrs=(1e-3, 1e-2), div_factor=5.0, pct_start=0.5, final_div=100.0)
    assert s.lrs_at(0) == pytest.approx([2e-4, 2e-3])
    assert s.lrs_at(2) == pytest.approx([1e-3, 1e-2])
    assert s.lrs_at(4) == pytest.approx([1e-5, 1e-4])
    trace = simulate_one_cycle(4, slice(1e-2), n_groups=3, div_factor=5.0, pct_start=0.5, final_div=100.0)
    assert trace.group_lrs[2] == pytest.approx([1e-3, 1e-3, 1e-2])
    assert trace.to_dict()["lrs"] == trace.lrs


@pytest.mark.parametrize("n, pct", [(24, 0.3), (50, 0.25), (13, 0.4)])
def test_one_cycle_matches_torch_one_cycle_lr(n, pct):
    """torch's OneCycleLR reaches the peak at step ``pct * total - 1`` and the final lr at the last
    step; fastai v1 reaches the peak at ``a1 = int(n * pct)`` and the final lr one step after the
    cycle. So fastai's n iterations are torch's first n steps of a ``total_steps = n + 1`` cycle
    with ``pct_start = (a1 + 1) / (n + 1)`` (the off-by-one between the two)."""
    a1, _ = one_cycle_phases(n, pct)
    mine = simulate_one_cycle(n, 1e-2, pct_start=pct)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1e-2, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-2, total_steps=n + 1, pct_start=(a1 + 1) / (n + 1), div_factor=25.0,
        final_div_factor=1e4, base_momentum=0.85, max_momentum=0.95,
    )  # fmt: skip
    lrs, moms = [], []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    assert mine.lrs == pytest.approx(lrs, rel=1e-6)
    assert mine.moms == pytest.approx(moms, rel=1e-6)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2 / 25e4)  # torch's last == v1's "after"
