"""Saves survive any sequence of crashes: a kill is simulated at every step of a save (each write,
fsync, link and rename, through ``learnkit.atomic.crash_hook``), for every pair of crash points in
two consecutive saves and for a sample of triples; ``--resume``'s load must then find a consistent
model/optimizer pair, with the weights and the run position of one and the same save.

Before the protocol of :func:`learnkit.persist.save_learner`, a kill between a save's two renames
followed by a kill during the next save's write left no consistent pair (exit 4, "torn save?").
"""

from __future__ import annotations

import itertools
import random
import shutil
import time

import pytest
import torch

from learnkit import ImageDataBunch, atomic
from learnkit.vision import cnn_learner
from tests.core.tiny_images import make_class_folder

POINTS = [
    "write:last.opt.safetensors",
    "written:last.opt.safetensors",
    "synced:last.opt.safetensors",
    "write:last.safetensors",
    "written:last.safetensors",
    "synced:last.safetensors",
    "link:prev",
    "rename:prev",
    "rename:opt",
    "rename:model",
    "remove:prev",
    None,  # the save completes
]
FIGURES: dict[str, int] = {}


class Killed(BaseException):
    """What the hook raises where a SIGKILL would have stopped the process."""


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", path=tmp_path_factory.mktemp("run"))
    learn.fit(1, 1e-3)  # an optimizer with state
    return learn


def _mark(learn, k: int) -> None:
    """Make the learner's state recognisably save number ``k``: weights and run position."""
    with torch.no_grad():
        for p in learn.model.parameters():
            p.fill_(float(k))
    learn.epoch, learn.iteration, learn.batch = k, 10 * k, 0


def _save(learn, k: int, crash_at: str | None) -> None:
    def hook(step: str) -> None:
        if step == crash_at:
            raise Killed(step)

    _mark(learn, k)
    atomic.crash_hook = hook
    try:
        learn.save("last")
    except Killed:
        pass
    finally:
        atomic.crash_hook = None


def _loaded(learn, folder) -> int:
    """Load ``last`` as --resume does; return which save it was (checking the pair agrees)."""
    learn.path = folder
    learn.load("last", with_opt=True)
    k = learn.epoch
    assert learn.iteration == 10 * k
    values = {float(p.detach().flatten()[0]) for p in learn.model.parameters()}
    assert values == {float(k)}, f"weights of another save than the position ({k}): {values}"
    return k


def _sequence(learn, tmp_path, crashes: tuple) -> int:
    folder = tmp_path / "_".join(str(c) for c in crashes).replace(":", "-").replace(".", "")
    learn.path = folder
    _save(learn, 1, None)  # a whole checkpoint to start from
    for k, crash in enumerate(crashes, start=2):
        _save(learn, k, crash)
    k = _loaded(learn, folder)
    shutil.rmtree(folder)
    return k


def test_every_pair_of_crash_points_leaves_a_consistent_pair(learn, tmp_path):
    pairs = list(itertools.product(POINTS, repeat=2))
    for crashes in pairs:
        k = _sequence(learn, tmp_path, crashes)
        assert k in (1, 2, 3)
        if crashes[1] is None:
            assert k == 3  # a completed save is what is loaded
    FIGURES["crash point pairs"] = len(pairs)


def test_sampled_triples_of_crash_points_leave_a_consistent_pair(learn, tmp_path):
    rng = random.Random(0)
    triples = [tuple(rng.choice(POINTS) for _ in range(3)) for _ in range(60)]
    for crashes in triples:
        assert _sequence(learn, tmp_path, crashes) in (1, 2, 3, 4)
    FIGURES["crash point triples"] = len(triples)


def test_a_crash_before_the_model_rename_keeps_the_previous_save_whole(learn, tmp_path):
    learn.path = tmp_path
    _save(learn, 1, None)
    _save(learn, 2, "rename:model")  # optimizer file renamed, model file not: torn on disk
    assert _loaded(learn, tmp_path) == 1  # the previous save, from the kept optimizer file
    _save(learn, 3, "write:last.safetensors")  # killed again, during the next save's write
    assert _loaded(learn, tmp_path) == 1  # before the protocol: exit 4, "torn save?"


def test_a_reader_polling_during_saves_always_gets_a_consistent_pair(learn, tmp_path):
    """Before: readers saw torn model/optimizer pairs (9 of 1,252 polls) while a fit saved."""
    import copy
    import threading

    learn.path = tmp_path
    _save(learn, 1, None)
    reader = copy.deepcopy(learn)
    done = threading.Event()

    def write() -> None:
        for k in range(2, 40):
            _save(learn, k, None)
            time.sleep(0.02)  # a fit saves between batches, not back to back
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    polls = 0
    while not done.is_set() or polls < 5:
        _loaded(reader, tmp_path)  # raises on a torn pair; checks weights agree with the position
        polls += 1
    writer.join()
    FIGURES["polls during saves"] = polls
