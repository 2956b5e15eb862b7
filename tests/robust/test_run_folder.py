"""One writer per run folder, run folders checked up front, full disks, and memory estimates.

Before: two fits on one ``--path`` both ran (interleaved ``history.csv``, torn pairs, one deleting
the other's temp file); a bad ``--path`` was found after an epoch; a full disk ended in a raw
``SafetensorError``; ``lr-find`` lost its suggestion when the plot could not be written; ``--size
8192`` was allowed.
"""

from __future__ import annotations

import errno
import os

import pytest

from learnkit import ImageDataBunch, atomic
from learnkit.checkpoint import stale_temp_files
from learnkit.errors import LearnkitError, UsageError
from learnkit.jobs.fitting import run_fit
from learnkit.jobs.setup import check_memory
from learnkit.run_lock import check_run_folder, holds_lock, run_folder_lock
from learnkit.vision import cnn_learner
from tests.core.tiny_images import make_class_folder

from .conftest import one_error_line, run_cli

FIT = ["fit", "--arch", "simple_cnn", "--size", "16", "--device", "cpu", "--epochs", "1"]


def test_a_second_fit_on_a_folder_in_use_is_refused_naming_the_holder(tiny_folder, tmp_path):
    run = tmp_path / "run"
    with run_folder_lock(run):
        assert holds_lock(run)
        (run / "models").mkdir()
        other = run / "models" / ".last.safetensors.99999.abc.tmp"  # another writer's temp file
        other.write_bytes(b"x")
        proc = run_cli(FIT[0], str(tiny_folder), *FIT[1:], "--path", str(run))
        assert proc.returncode == 2, proc.stderr
        line = one_error_line(proc.stderr)
        assert f"pid {os.getpid()}" in line and "in use" in line
        assert not (run / "history.csv").exists()  # nothing of the second fit was written
        assert other.exists()  # nor anything of the first removed
    assert not holds_lock(run)
    proc = run_cli(FIT[0], str(tiny_folder), *FIT[1:], "--path", str(run))  # released: it runs
    assert proc.returncode == 0, proc.stderr
    assert stale_temp_files(run / "models") == []  # the lock holder may clean up


def test_only_the_lock_holder_removes_temp_files(tmp_path):
    root = make_class_folder(tmp_path / "cls")
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", path=tmp_path / "run")
    (tmp_path / "run" / "models").mkdir(parents=True)
    other = tmp_path / "run" / "models" / ".last.safetensors.1.x.tmp"
    other.write_bytes(b"being written by another run")
    run_fit(learn, 1, 1e-3)  # a library fit without the lock: leaves other runs' files alone
    assert other.exists()


@pytest.mark.parametrize("case", ["path-is-file", "models-is-file", "last-is-dir", "opt-is-dir"])
def test_an_unusable_path_is_refused_before_training(tiny_folder, tmp_path, case):
    run = tmp_path / "run"
    if case == "path-is-file":
        run.write_text("x")
    elif case == "models-is-file":
        run.mkdir()
        (run / "models").write_text("x")
    else:
        name = "last.safetensors" if case == "last-is-dir" else "last.opt.safetensors"
        (run / "models" / name).mkdir(parents=True)
    proc = run_cli(FIT[0], str(tiny_folder), *FIT[1:], "--path", str(run))
    assert proc.returncode == 2, proc.stderr
    assert "epoch" not in proc.stderr  # refused before a single epoch
    one_error_line(proc.stderr)


def test_an_unwritable_folder_is_refused_up_front(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(UsageError, match="cannot write in .*read-only file system"):
        check_run_folder(tmp_path / "run")


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path):
    root = make_class_folder(tmp_path / "cls")
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", path=tmp_path / "run")
    learn.fit(1, 1e-3)
    file = learn.save("last")
    before = file.read_bytes(), file.with_name("last.opt.safetensors").read_bytes()

    def full(step):
        if step.startswith("written:"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    atomic.crash_hook = full
    try:
        with pytest.raises(LearnkitError) as err:
            learn.save("last")
    finally:
        atomic.crash_hook = None
    message = str(err.value)
    assert err.value.exit_code == 1 and "no space left on device" in message
    assert str(file) in message and "intact" in message
    assert (file.read_bytes(), file.with_name("last.opt.safetensors").read_bytes()) == before
    assert stale_temp_files(file.parent) == []


def test_lr_find_prints_its_suggestion_when_the_plot_cannot_be_written(tiny_folder, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "plots").write_text("a file where the plots folder would go")
    args = ["lr-find", str(tiny_folder), "--arch", "simple_cnn", "--size", "16", "--device", "cpu"]
    proc = run_cli(*args, "--num-it", "8", "--path", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    assert '"suggestion"' in proc.stdout and "could not write the plot" in proc.stderr


def test_a_size_beyond_memory_is_refused_with_the_estimate(tiny_folder, tmp_path):
    with pytest.raises(UsageError, match=r"--size 8192 with --bs 64 needs about \d+\.\d GiB"):
        check_memory(8192, 64)
    check_memory(224, 64)  # ordinary sizes pass
    proc = run_cli(
        FIT[0], str(tiny_folder), "--arch", "simple_cnn", "--size", "8192", "--path", str(tmp_path)
    )
    assert proc.returncode == 2 and "GiB" in one_error_line(proc.stderr)


def test_a_folder_in_use_is_refused_before_torch_loads(tmp_path):
    """The command line's early check (learnkit.run_lock.refuse_if_in_use, imports no torch): a second
    fit on a folder another process holds is refused at once, not after loading torch."""
    import subprocess
    import sys

    from learnkit.run_lock import refuse_if_in_use

    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom learnkit.run_lock import run_folder_lock\n"
         f"with run_folder_lock({str(run)!r}):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UsageError, match="in use"):
            refuse_if_in_use(run)
    finally:
        holder.kill()
        holder.wait()
    refuse_if_in_use(run)  # free again: no error, and nothing claimed
    refuse_if_in_use(tmp_path / "missing")
    code = "import sys; import learnkit.run_lock; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
