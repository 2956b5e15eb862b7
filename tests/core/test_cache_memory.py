"""The memory-aware cache: ``auto`` caches what fits in the memory available (a cgroup's room and
``MemAvailable``, less a headroom, shared by the run's processes); ``ram`` that cannot fit is
refused with exit 3 before anything is decoded."""

from __future__ import annotations

import pytest

from learnkit.data import memory
from learnkit.data.dataset import ImageDataset, resolve_cache
from learnkit.errors import DataError
from tests.cli.conftest import make_image_folder, run_learnkit

GiB = 2**30


@pytest.fixture
def four_gib(monkeypatch):
    from learnkit.data import shared_cache

    monkeypatch.setattr(memory, "mem_available", lambda: 8 * GiB)
    monkeypatch.setattr(memory, "cgroup_room", lambda: 4 * GiB)  # the container is the limit
    monkeypatch.setattr(shared_cache, "sharing_possible", lambda: False)  # a copy per process
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)


def test_processes_sharing_the_cache_count_one_copy(four_gib, monkeypatch):
    from learnkit.data import shared_cache

    monkeypatch.setattr(shared_cache, "sharing_possible", lambda: True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert memory.cache_copies() == 1 and memory.cache_budget() == 3 * GiB


def test_budget_is_the_smaller_room_less_headroom_shared_by_processes(four_gib, monkeypatch):
    assert memory.available_memory() == 4 * GiB
    assert memory.cache_budget() == 3 * GiB
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert memory.cache_budget() == int(1.5 * GiB)


def test_auto_caches_what_fits_and_streams_the_rest(four_gib, monkeypatch):
    assert resolve_cache("auto", int(2.9 * GiB)) == "ram"
    assert resolve_cache("auto", int(3.1 * GiB)) == "none"
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two processes, each its own copy
    assert resolve_cache("auto", int(2.9 * GiB)) == "none"


def test_ram_that_cannot_fit_names_the_sizes(four_gib):
    sizes = r"\(9 images at 9 px\) take 5\.0 GiB, more than the 3\.0 GiB .*4\.0 GiB"
    with pytest.raises(DataError, match=sizes):
        resolve_cache("ram", 5 * GiB, what="9 images at 9 px")
    assert resolve_cache("none", 50 * GiB) == "none"


def test_cgroup_v1_without_a_limit_is_no_limit(tmp_path, monkeypatch):
    limit, usage = tmp_path / "limit", tmp_path / "usage"
    limit.write_text("9223372036854771712\n"), usage.write_text("100\n")
    monkeypatch.setattr(memory, "_CGROUP_FILES", ((str(limit), str(usage)),))
    assert memory.cgroup_room() is None
    limit.write_text(f"{GiB}\n")
    assert memory.cgroup_room() == GiB - 100


def test_dataset_refuses_before_decoding(tmp_path, four_gib, monkeypatch):
    import learnkit.data.dataset as dataset

    def no_decode(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(dataset, "load_image", no_decode)
    data = make_image_folder(tmp_path / "d")
    with pytest.raises(DataError, match="--cache ram"):
        ImageDataset(sorted(data.rglob("*.png")), None, size=8192 * 2, cache="ram")


def test_cli_refuses_ram_before_the_batch_estimate(tmp_path):
    from PIL import Image

    one = tmp_path / "one.png"
    Image.new("RGB", (8, 8)).save(one)
    for split, n in (("train", 200), ("valid", 2)):
        for c in "ab":
            (tmp_path / "d" / split / c).mkdir(parents=True)
            for k in range(n):
                (tmp_path / "d" / split / c / f"{k}.png").hardlink_to(one)
    budget = memory.cache_budget()
    if budget is None or budget > 60 * GiB:
        pytest.skip("this machine could cache 60 GiB")
    proc = run_learnkit(
        "fit", str(tmp_path / "d"), "--arch", "simple_cnn", "--size", "8192", "--cache", "ram",
        "--path", str(tmp_path / "r"),
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert "404 images at 8192 px" in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "r").exists()
