"""Built-in samples: deterministic, atomic under concurrency, resolvable; torch-free to import."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from learnkit.data.samples import SAMPLES, VERSION, cache_root, resolve_data, sample_path, write_sample
from learnkit.errors import DataError

ROOT = Path(__file__).resolve().parents[2]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LEARNKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "samples"


def test_shapes_is_deterministic_and_laid_out(tmp_path):
    a = write_sample("shapes", tmp_path / "a")
    b = write_sample("sample:shapes", tmp_path / "b")
    files_a = tree(a)
    assert files_a == tree(b)
    for split, per_class in (("train", 100), ("valid", 30)):
        classes = sorted(p.name for p in (a / split).iterdir())
        assert classes == ["circle", "cross", "square", "triangle"]
        assert all(len(list((a / split / c).glob("*.png"))) == per_class for c in classes)
    img = Image.open(a / "train" / "cross" / "cross_0000.png")
    assert img.size == (64, 64) and img.mode == "RGB"


def test_shapes_seg_is_consistent(tmp_path):
    a = write_sample("shapes-seg", tmp_path / "a")
    assert tree(a) == tree(write_sample("shapes-seg", tmp_path / "b"))
    codes = (a / "codes.txt").read_text().split()
    assert codes[0] == "background" and len(codes) == 4
    images, masks = sorted((a / "images").iterdir()), sorted((a / "masks").iterdir())
    assert len(images) == 200 and [p.name for p in images] == [p.name for p in masks]
    stacked = np.stack([np.asarray(Image.open(m)) for m in masks])
    assert stacked.shape == (200, 64, 64) and stacked.max() == len(codes) - 1
    assert (stacked > 0).mean() > 0.25  # large objects


def test_resolve_data(cache, tmp_path):
    assert resolve_data(tmp_path) == tmp_path
    with pytest.raises(DataError, match="data not found"):
        resolve_data(tmp_path / "missing")
    with pytest.raises(DataError, match="shapes-seg"):
        resolve_data("sample:nope")
    path = resolve_data("sample:shapes-seg")
    assert path == cache / f"shapes-seg-v{VERSION}" == cache_root() / f"shapes-seg-v{VERSION}"
    assert (path / "codes.txt").is_file()
    stamp = (path / "codes.txt").stat().st_mtime_ns
    assert resolve_data("sample:shapes-seg") == path and (path / "codes.txt").stat().st_mtime_ns == stamp
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no drafts left behind


def test_write_sample_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        write_sample("shapes-seg", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    assert (write_sample("shapes-seg", tmp_path / "empty") / "codes.txt").is_file()
    with pytest.raises(DataError, match="unknown sample"):
        write_sample("faces", tmp_path / "new")
    assert set(SAMPLES) == {"shapes", "shapes-seg"}


# Each process draws the sample, then waits (file barrier) until the other has drawn too, so both
# reach the rename with a whole draft: the race is forced, not left to timing.
_WORKER = """
import json, os, sys, time
from pathlib import Path
import learnkit.data.samples as samples
barrier = Path(sys.argv[1])
draw = samples._DRAWERS["shapes"]
outcome = {"drew": False}

def draw_then_wait(dest):
    draw(dest)
    outcome["drew"] = True
    (barrier / str(os.getpid())).touch()
    deadline = time.time() + 60
    while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.01)

samples._DRAWERS["shapes"] = draw_then_wait
path = samples.resolve_data("sample:shapes")
files = sorted(str(p.relative_to(path)) for p in Path(path).rglob("*.png"))
result = {"path": str(path), "n": len(files), "drew": outcome["drew"], "torch": "torch" in sys.modules}
print(json.dumps(result))
"""


def test_two_processes_at_once_both_get_a_whole_data_set(cache, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(barrier)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    assert [r["drew"] for r in results] == [True, True]  # both drew; one rename won, one lost
    assert [r["n"] for r in results] == [520, 520]
    assert results[0]["path"] == results[1]["path"] == str(cache / f"shapes-v{VERSION}")
    assert not any(r["torch"] for r in results)  # resolving a sample imports no torch
    assert [p.name for p in cache.iterdir()] == [f"shapes-v{VERSION}"]  # the loser's draft is gone
    assert tree(sample_path("shapes")) == tree(write_sample("shapes", tmp_path / "ref"))
