"""A run's position counts batches of its processes: the checkpoint records the count
(``run.world_size``); a load by another count is refused unless ``reshard``, which re-plans the
batch in the epoch (samples done = batch x saved processes, rounded down for the count now)."""

from __future__ import annotations

import json

import pytest

from learnkit import Learner, persist
from learnkit.errors import UsageError
from learnkit.jobs.config import RunConfig
from learnkit.jobs.run_folder import check_process_count
from learnkit.safetensors_header import read_header
from tests.core.tiny import tiny_data, tiny_model


def _saved_by_two(tmp_path, monkeypatch) -> Learner:
    learn = Learner(tiny_data(n=128, bs=8), tiny_model(), path=tmp_path)  # 16 batches an epoch
    learn.fit(1, 1e-2)
    learn.epoch, learn.iteration, learn.batch = 1, 19, 3  # batch 3 of epoch 2, by 2 processes
    monkeypatch.setattr(persist.distributed, "world_size", lambda: 2)
    learn.save("mid")
    monkeypatch.undo()
    return learn


def test_checkpoint_records_the_process_count(tmp_path, monkeypatch):
    _saved_by_two(tmp_path, monkeypatch)
    _, meta = read_header(tmp_path / "models" / "mid.opt.safetensors")
    assert json.loads(meta["run"])["world_size"] == 2


def test_another_count_is_refused_naming_both(tmp_path, monkeypatch):
    learn = _saved_by_two(tmp_path, monkeypatch)
    fresh = Learner(learn.data, tiny_model(), path=tmp_path)
    with pytest.raises(UsageError, match=r"2 processes, this one has 1.*--reshard"):
        fresh.load("mid", with_opt=True)
    assert fresh.epoch == 0 and fresh.opt is None  # nothing changed


def test_reshard_replans_the_batch(tmp_path, monkeypatch):
    learn = _saved_by_two(tmp_path, monkeypatch)
    fresh = Learner(learn.data, tiny_model(), path=tmp_path)
    fresh.load("mid", with_opt=True, reshard=True)
    assert (fresh.epoch, fresh.batch, fresh.iteration) == (1, 6, 22)  # 3 steps of 2 = 6 of 1
    assert fresh.resharded == (2, 1, 3, 6)
    assert persist.reshard_batch(5, 1, 2) == 2  # 5 single steps: 2 steps of 2, one sample seen again


def test_config_level_check_before_the_data_is_read():
    saved = RunConfig.from_flat("fit", data="d", arch="simple_cnn", nproc=2)
    check_process_count(saved, 2)
    check_process_count(saved, 1, reshard=True)
    with pytest.raises(UsageError, match=r"trained by 2 processes .*this one has 1: resume with --nproc 2"):
        check_process_count(saved, 1)
    check_process_count(RunConfig.from_flat("fit", data="d", arch="simple_cnn"), 1)  # None: one process
