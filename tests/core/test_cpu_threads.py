"""The torch thread count of a CPU fit: the cores other processes leave idle, measured from /proc/stat."""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from learnkit import cpu_load
from learnkit.jobs.setup import cpu_threads


@given(st.floats(0, 64), st.integers(1, 64))
def test_idle_cores_is_the_rounded_free_count_and_at_least_one(busy, cores):
    n = cpu_load.idle_cores(busy, cores)
    assert 1 <= n <= cores
    free = cores - busy
    if free >= 1:
        assert abs(n - free) <= 0.5  # the nearest whole number of free cores
    else:
        assert n == 1


def _stat_file(tmp_path, name, busy, idle, cpus):
    # user nice system idle iowait irq softirq steal
    lines = [f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0"] + [f"cpu{i} 0 0 0 0 0 0 0 0 0 0" for i in range(cpus)]
    path = tmp_path / name
    path.write_text("\n".join(lines + ["intr 0"]) + "\n")
    return path


def test_the_probe_counts_other_processes_busy_cores_and_not_its_own(tmp_path, monkeypatch):
    cores = cpu_load.usable_cores()
    start = _stat_file(tmp_path, "a", busy=1000, idle=1000, cpus=cores)
    monkeypatch.setattr(cpu_load, "_STAT", str(start))
    probe = cpu_load.Probe()
    # over the window the machine was busy for 75% of all CPU time; this process used none of it
    monkeypatch.setattr(cpu_load, "_STAT", str(_stat_file(tmp_path, "b", busy=1300, idle=1100, cpus=cores)))
    monkeypatch.setattr(cpu_load, "_own_cpu_seconds", lambda: probe.start_own)
    busy = probe.others_busy(min_window=0.0)
    assert busy == pytest.approx(0.75 * cores)
    # the same window where this process itself used every busy jiffy: nobody else is busy
    wall = 0.5
    monkeypatch.setattr(cpu_load.time, "perf_counter", lambda: probe.start_wall + wall)
    monkeypatch.setattr(cpu_load, "_own_cpu_seconds", lambda: probe.start_own + 0.75 * cores * wall)
    assert probe.others_busy(min_window=0.0) == pytest.approx(0.0, abs=1e-9)


def test_a_container_seeing_more_cpus_than_it_may_use_is_not_measured(tmp_path, monkeypatch):
    cores = cpu_load.usable_cores()
    monkeypatch.setattr(cpu_load, "_STAT", str(_stat_file(tmp_path, "a", 10, 10, cpus=cores + 3)))
    probe = cpu_load.Probe()
    assert probe.others_busy(min_window=0.0) is None
    monkeypatch.setattr(cpu_load, "_STAT", str(tmp_path / "missing"))
    assert cpu_load.Probe().others_busy(min_window=0.0) is None


class _FixedProbe:
    def __init__(self, busy):
        self.busy = busy

    def others_busy(self, min_window=0.25):
        return self.busy


@pytest.fixture
def threads_restored(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_threads_follows_the_idle_cores(threads_restored, monkeypatch):
    monkeypatch.setattr(cpu_load, "usable_cores", lambda: 2)
    cpu = torch.device("cpu")
    assert cpu_threads(cpu, _FixedProbe(0.1)) == 2 and torch.get_num_threads() == 2
    assert cpu_threads(cpu, _FixedProbe(1.2)) == 1 and torch.get_num_threads() == 1
    assert cpu_threads(cpu, _FixedProbe(5.0)) == 1
    # unmeasurable, or a deterministic run (its thread count may not depend on the load): 1 on 2 cores
    assert cpu_threads(cpu, _FixedProbe(None)) == 1
    assert cpu_threads(cpu, _FixedProbe(0.0), deterministic=True) == 1
    monkeypatch.setattr(cpu_load, "usable_cores", lambda: 8)
    assert cpu_threads(cpu, _FixedProbe(3.0)) == 5 and torch.get_num_threads() == 5
    assert cpu_threads(cpu, _FixedProbe(None)) is None  # torch's default above 2 cores


def test_omp_num_threads_and_other_devices_are_left_alone(threads_restored, monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(torch.device("cpu"), _FixedProbe(0.0)) is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads(torch.device("meta"), _FixedProbe(0.0)) is None
    assert torch.get_num_threads() == before
    assert "OMP_NUM_THREADS" not in os.environ


def test_others_runnable_takes_this_processes_running_threads_off(tmp_path, monkeypatch):
    # this thread is running while it reads: a machine-wide count of 1 is this process alone
    fake = tmp_path / "stat"
    fake.write_text("cpu  1 0 0 1 0 0 0 0 0 0\nprocs_running 1\nprocs_blocked 0\n")
    monkeypatch.setattr(cpu_load, "_STAT", str(fake))
    assert cpu_load.others_runnable() == 0
    fake.write_text("cpu  1 0 0 1 0 0 0 0 0 0\nprocs_running 4\n")
    assert 0 < cpu_load.others_runnable() <= 3
    fake.write_text("cpu  1 0 0 1 0 0 0 0 0 0\n")  # no procs_running line: unknown
    assert cpu_load.others_runnable() is None


def test_others_runnable_sees_a_busy_nice_process():
    """A ``nice``d busy loop gets little CPU beside a fit yet stalls its threads: it must count."""
    import subprocess
    import sys
    import time

    if cpu_load.others_runnable() is None:
        pytest.skip("no /proc/stat here")
    busy = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        samples = []
        for _ in range(20):
            samples.append(cpu_load.others_runnable())
            time.sleep(0.01)
    finally:
        busy.kill()
        busy.wait()
    assert sum(samples) / len(samples) >= 0.5  # the loop is runnable nearly all the time


def test_cpu_threads_callback_drops_a_thread_for_a_busy_neighbour_and_adds_it_back_with_a_margin(
    threads_restored, monkeypatch
):
    from learnkit.callback import RunState
    from learnkit.callbacks.cpu_threads import CpuThreads

    torch.set_num_threads(2)
    cb = CpuThreads(cores=2, window=0.0, sample_every=0.0)
    seen = iter([1, 1, 1, 0, 1, 0, 0, 0, 0])  # a neighbour busy, then half the time, then gone
    monkeypatch.setattr(cpu_load, "others_runnable", lambda: next(seen))
    state = RunState(train=True)
    cb.on_train_begin(state)
    for i in range(3):
        state.iteration = i
        cb.on_batch_end(state)
    assert torch.get_num_threads() == 1 and cb.changes == [(2, 1)]
    for i in range(3, 6):  # mean 1/3: under the switching point, not by the margin
        state.iteration = i
        cb.on_batch_end(state)
    assert torch.get_num_threads() == 1
    for i in range(6, 9):  # free: the thread comes back
        state.iteration = i
        cb.on_batch_end(state)
    assert torch.get_num_threads() == 2 and cb.changes == [(2, 1), (8, 2)]
    cb.on_batch_end(RunState(train=False))  # validation batches are not sampled
