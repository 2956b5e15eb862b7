"""Checkpoints written in the background (learnkit.checkpoint_writer): the snapshot is the epoch's
state whatever training does meanwhile, one write at a time, ``best`` a link of ``last``, a failed
write reported with the previous checkpoint intact, and a kill -9 while a background write is in
flight leaves a run that resumes to its end."""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import threading
import time

import pytest
import torch

from learnkit import ImageDataBunch, atomic
from learnkit.checkpoint import MODEL_FORMAT, read_safetensors
from learnkit.checkpoint_writer import CheckpointWriter
from learnkit.errors import LearnkitError
from learnkit.vision import cnn_learner
from tests.core.tiny_images import make_class_folder


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", path=tmp_path_factory.mktemp("run"))
    learn.fit(1, 1e-3)  # an optimizer with state
    return learn


@pytest.fixture
def hook():
    """Install a crash hook for the test (removed afterwards)."""

    def install(fn):
        atomic.crash_hook = fn

    yield install
    atomic.crash_hook = None


def _mark(learn, k: int) -> None:
    with torch.no_grad():
        for p in learn.model.parameters():
            p.fill_(float(k))
    learn.epoch, learn.iteration, learn.batch = k, 10 * k, 0


def _saved(learn, name: str = "last", with_opt: bool | None = True) -> int:
    """Load ``name``; which save it was (the weights and, with the optimizer, the position agree)."""
    learn.load(name, with_opt=with_opt)
    values = {float(p.detach().flatten()[0]) for p in learn.model.parameters()}
    assert len(values) == 1, values
    k = int(values.pop())
    if with_opt:
        assert (learn.epoch, learn.iteration) == (k, 10 * k)
    return k


def _in_writer() -> bool:
    return threading.current_thread().name == "learnkit-checkpoint"


def test_the_snapshot_is_the_epochs_state_while_training_changes_the_weights(learn, tmp_path, hook):
    learn.path = tmp_path
    go = threading.Event()
    hook(lambda step: go.wait(10) if step == "write:last.opt.safetensors" and _in_writer() else None)
    writer = CheckpointWriter()
    _mark(learn, 3)
    writer.request(learn, "last", True, None)
    writer.flush()
    assert writer.busy
    _mark(learn, 7)  # the next epoch trains on while the write waits
    go.set()
    writer.wait()
    assert _saved(learn) == 3


def test_best_saved_with_last_is_a_link_of_its_model_file_without_optimizer_file(learn, tmp_path):
    learn.path = tmp_path
    models = tmp_path / "models"
    writer = CheckpointWriter()
    _mark(learn, 1)
    writer.request(learn, "last", True, None)
    writer.request(learn, "best", False, {"best": {"epoch": 1, "monitor": "valid_loss", "value": 0.5}})
    writer.wait()
    assert (models / "best.safetensors").stat().st_ino == (models / "last.safetensors").stat().st_ino
    assert not (models / "best.opt.safetensors").exists()
    _, meta = read_safetensors(models / "best.safetensors", MODEL_FORMAT)
    assert meta["best"] == {"epoch": 1, "monitor": "valid_loss", "value": 0.5}
    _mark(learn, 2)  # the next epoch: last is replaced by a rename, best keeps the old file
    writer.request(learn, "last", True, None)
    writer.wait()
    assert (models / "best.safetensors").stat().st_ino != (models / "last.safetensors").stat().st_ino
    assert _saved(learn, "best", with_opt=None) == 1
    assert _saved(learn, "last") == 2
    assert sorted(p.name for p in models.iterdir()) == [
        "best.safetensors",
        "last.opt.safetensors",
        "last.safetensors",
    ]


def test_a_stale_optimizer_file_of_best_is_removed_when_best_is_saved_alone(learn, tmp_path):
    learn.path = tmp_path
    _mark(learn, 1)
    learn.save("best", with_opt=True)  # an older run's best, with an optimizer file
    _mark(learn, 2)
    learn.save("best", with_opt=False)
    assert not (tmp_path / "models" / "best.opt.safetensors").exists()
    assert _saved(learn, "best", with_opt=None) == 2


def test_one_write_in_flight_the_next_waits_and_says_so(learn, tmp_path, hook):
    learn.path = tmp_path
    hook(lambda step: time.sleep(0.3) if step == "synced:last.safetensors" and _in_writer() else None)
    writer = CheckpointWriter()
    _mark(learn, 1)
    writer.request(learn, "last", True, None)
    writer.flush()
    _mark(learn, 2)
    writer.request(learn, "last", True, None)
    with pytest.warns(UserWarning, match="waited .* for the previous one"):
        writer.flush()
    assert writer.waited == 1 and writer.wait_seconds > 0.05
    writer.wait()
    assert _saved(learn) == 2


def test_a_failed_background_write_is_raised_and_keeps_the_previous_checkpoint(learn, tmp_path, hook):
    learn.path = tmp_path
    writer = CheckpointWriter()
    _mark(learn, 1)
    writer.request(learn, "last", True, None)
    writer.wait()

    def full(step: str) -> None:
        if step == "write:last.safetensors" and _in_writer():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    hook(full)
    _mark(learn, 2)
    writer.request(learn, "last", True, None)
    writer.flush()  # the failure comes back at the next meeting with the main thread
    with pytest.raises(LearnkitError, match=r"no space left on device; the previous checkpoint .* is intact"):
        writer.wait()
    atomic.crash_hook = None
    assert _saved(learn) == 1
    assert not list((tmp_path / "models").glob(".*.tmp"))


def test_load_and_save_wait_for_the_write_in_flight(learn, tmp_path, hook):
    learn.path = tmp_path
    _mark(learn, 1)
    learn.save("last")
    go = threading.Event()
    hook(lambda step: go.wait(10) if step == "rename:opt" and _in_writer() else None)
    writer = CheckpointWriter()
    _mark(learn, 2)
    writer.request(learn, "last", True, None)
    writer.flush()
    threading.Timer(0.3, go.set).start()
    assert _saved(learn) == 2  # not save 1, nor a torn pair: load waited for the write
    writer.wait()


# --- a real fit killed (SIGKILL) while its background write is in flight ---

PRELOAD = [
    "torch",
    "learnkit.jobs.setup",
    "learnkit.jobs.train",
    "learnkit.vision.cnn",
    "learnkit.zoo.builtin",
]
EPOCHS = 3


def _config(folder: str, path: str, resume: bool):
    from learnkit.jobs.config import RunConfig

    return RunConfig.from_flat(
        "fit", data=folder, arch="simple_cnn", epochs=EPOCHS, lr=1e-3, bs=4, size=16, seed=0, path=path,
        device="cpu", resume="last" if resume else None, exist_ok=resume,
    )  # fmt: skip


def _fit_killed_in_write(folder: str, path: str, at: str) -> None:
    """Fit; at step ``at`` of the second epoch's background save, let training go on a moment,
    then SIGKILL the process (the write is in flight, the next epoch running)."""
    import signal
    import warnings

    from learnkit.jobs.train import run

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    seen = []

    def kill(step: str) -> None:
        if _in_writer() and step == "write:last.opt.safetensors":
            seen.append(step)
        if _in_writer() and step == at and len(seen) == 2:
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)

    atomic.crash_hook = kill
    run(_config(folder, path, resume=False))


@pytest.mark.slow
@pytest.mark.parametrize("at", ["written:last.opt.safetensors", "rename:model", "rename:link"])
def test_a_kill_during_a_background_write_resumes_to_the_end(tmp_path, at):
    from learnkit.jobs.train import run

    folder = make_class_folder(tmp_path / "cls")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    proc = ctx.Process(target=_fit_killed_in_write, args=(str(folder), str(tmp_path / "run"), at))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -9, f"the fit was not killed in its write (exit {proc.exitcode})"
    models = tmp_path / "run" / "models"
    for file in models.glob("*.safetensors"):
        read_safetensors(file)  # every file whole
    result = run(_config(str(folder), str(tmp_path / "run"), resume=True))
    assert len(result["history"]) == EPOCHS
    assert result["resumed_from"]["epoch"] in (1, 2)


def test_fit_plots_are_drawn_by_a_thread_and_named_at_once(learn, tmp_path):
    import threading as th

    from learnkit.jobs.train import save_fit_plots

    learn.path = tmp_path
    paths = save_fit_plots(learn, background=True)
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["losses.png", "lr.png", "metrics.png"][: len(paths)]
    for thread in th.enumerate():
        if thread.name == "learnkit-plots":
            thread.join(60)
    assert all((tmp_path / "plots" / p.rsplit("/", 1)[-1]).stat().st_size > 0 for p in paths)


def test_a_plot_that_cannot_be_written_is_one_warning_line(learn, tmp_path, capfd):
    import threading as th

    from learnkit.jobs.train import save_fit_plots

    learn.path = tmp_path
    (tmp_path / "plots").write_text("a file where the plots folder would go")
    save_fit_plots(learn, background=True)
    for thread in th.enumerate():
        if thread.name == "learnkit-plots":
            thread.join(60)
    err = capfd.readouterr().err
    assert err.startswith("warning: could not write the plots in") and err.count("\n") == 1


def test_the_plots_start_while_the_last_checkpoint_is_written_marked_at_its_best_epoch(tmp_path, hook):
    """The command line's plots are drawn while the last epoch's checkpoints are still being written
    (not after), and mark the epoch the ``best`` file records."""
    from learnkit import checkpoint_writer
    from learnkit.jobs import train

    folder = make_class_folder(tmp_path / "cls")
    hook(lambda step: time.sleep(0.3) if _in_writer() and step.startswith("write:") else None)
    seen = []
    draw = train.save_fit_plots

    def spy(learn, best_epoch=None, background=False):
        seen.append((best_epoch, any(w.busy for w in list(checkpoint_writer._writers))))
        return draw(learn, best_epoch, background)

    train.save_fit_plots = spy
    try:
        result = train.run(_config(str(folder), str(tmp_path / "run"), resume=False))
    finally:
        train.save_fit_plots = draw
    for thread in threading.enumerate():
        if thread.name == "learnkit-plots":
            thread.join(60)
    assert seen == [(result["best_epoch"], True)]
    assert [p.rsplit("/", 1)[-1] for p in result["plots"]] == ["losses.png", "lr.png", "metrics.png"]
    assert all(os.path.getsize(p) > 0 for p in result["plots"])
