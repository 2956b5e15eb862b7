"""Hostile and broken checkpoints given to the installed ``learnkit``: exit 4, one line, nothing run.

Each file is handed to ``learnkit validate`` (the whole load path: metadata, model rebuilt from the
zoo, weights); a few also to ``fit --resume`` and ``fit --init-from``. Pickles carry a payload that
would create a marker file if anything unpickled them. The commands run a few at a time.
"""

from __future__ import annotations

import json
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from learnkit.checkpoint import read_safetensors
from learnkit.cli.app import app
from learnkit.jobs.fitting import run_fit
from learnkit.jobs.setup import build_learner

from .conftest import one_error_line, run_cli


class _Payload:
    """Unpickling this creates ``marker``: proof that something unpickled a user's file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _rewrite(good: Path, dest: Path, *, tensors=None, meta=None) -> Path:
    """``good``'s tensors and metadata, changed by the ``tensors``/``meta`` functions, in ``dest``."""
    t, m = read_safetensors(good, check_finite=False)
    t = tensors(dict(t)) if tensors else t
    m = meta(dict(m)) if meta else m
    save_file(t, dest, metadata={k: json.dumps(v) for k, v in m.items()})
    return dest


def _first_float(t: dict) -> str:
    return next(k for k, v in t.items() if v.is_floating_point() and v.dim() > 1)


def _hostile_files(good: Path, folder: Path, marker: Path) -> dict[str, Path]:
    raw = good.read_bytes()
    files = {
        "huge-header": (b"\xff" * 7 + b"\x7f" + b"{}"),
        "header-not-json": struct.pack("<Q", 9) + b"{not json" + b"\0" * 16,
        "header-offsets-lie": struct.pack("<Q", 64)
        + json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode().ljust(64)
        + b"\0" * 8,
        "truncated": raw[:200],
        "truncated-data": raw[:-64],
        "empty": b"",
    }
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{name}.safetensors"
        out[name].write_bytes(content)
    key = _first_float(read_safetensors(good)[0])
    out["wrong-dtype"] = _rewrite(
        good, folder / "wrong-dtype.safetensors", tensors=lambda t: t | {key: t[key].to(torch.int32)}
    )
    out["nan-weights"] = _rewrite(
        good, folder / "nan.safetensors", tensors=lambda t: t | {key: torch.full_like(t[key], float("nan"))}
    )
    out["lies-class-count"] = _rewrite(
        good, folder / "classes.safetensors", meta=lambda m: m | {"classes": ["a", "b", "c"]}
    )
    out["lies-n-out"] = _rewrite(
        good, folder / "n_out.safetensors", meta=lambda m: m | {"model_spec": {**m["model_spec"], "n_out": 7}}
    )
    evil_arch = {"arch": "evil"}
    out["unknown-arch"] = _rewrite(
        good, folder / "arch.safetensors", meta=lambda m: m | {"model_spec": {**m["model_spec"], **evil_arch}}
    )
    out["no-format-tag"] = _rewrite(
        good, folder / "plain.safetensors", meta=lambda m: {k: v for k, v in m.items() if k != "format"}
    )
    evil = pickle.dumps({"state_dict": _Payload(marker)})
    out["pickle-named-safetensors"] = folder / "pickled.safetensors"
    out["pickle-named-safetensors"].write_bytes(evil)
    out["pt-file"] = folder / "weights.pt"
    out["pt-file"].write_bytes(evil)
    return out


@pytest.fixture(scope="module")
def trained(tiny_folder, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hostile-run")
    torch.set_num_threads(1)
    learn = build_learner(str(tiny_folder), "simple_cnn", bs=4, size=16, seed=0, path=run, device="cpu")
    run_fit(learn, 1, 1e-3)
    return run


def _check(proc, what: str) -> str:
    assert proc.returncode == 4, f"{what}: exit {proc.returncode}: {proc.stderr}"
    line = one_error_line(proc.stderr)
    assert proc.stdout == "", what
    return line


# the cases of the issue, each through the installed command; the variants run in-process below
INSTALLED = [
    "huge-header", "header-not-json", "truncated", "wrong-dtype", "nan-weights", "lies-class-count",
    "lies-n-out", "unknown-arch", "pickle-named-safetensors", "pt-file",
]  # fmt: skip


def test_hostile_checkpoints_are_refused_with_exit_4_and_one_line(tiny_folder, trained, tmp_path):
    marker = tmp_path / "UNPICKLED"
    files = _hostile_files(trained / "models" / "last.safetensors", tmp_path, marker)

    def validate(name):
        return run_cli("validate", str(tiny_folder), "--model", str(files[name]), "--device", "cpu")

    with ThreadPoolExecutor(max_workers=3) as pool:
        procs = dict(zip(INSTALLED, pool.map(validate, INSTALLED)))
    lines = {name: _check(proc, name) for name, proc in procs.items()}
    assert not marker.exists(), "a pickle was unpickled"
    assert "NaN or infinite" in lines["nan-weights"]
    assert "3 classes" in lines["lies-class-count"]
    assert "unknown arch 'evil'" in lines["unknown-arch"]
    assert "shape/dtype mismatch" in lines["wrong-dtype"]
    assert "header length" in lines["huge-header"]


def test_hostile_checkpoints_through_resume_and_init_from(tiny_folder, trained, tmp_path):
    marker = tmp_path / "UNPICKLED"
    files = _hostile_files(trained / "models" / "last.safetensors", tmp_path, marker)
    fit = ["fit", str(tiny_folder), "--arch", "simple_cnn", "--size", "16", "--device", "cpu", "--path"]
    cases = [
        [*fit, str(tmp_path / "r1"), "--init-from", str(files["pickle-named-safetensors"])],
        [*fit, str(tmp_path / "r3"), "--resume", str(files["truncated"])],
    ]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for args, proc in zip(cases, pool.map(lambda a: run_cli(*a), cases)):
            _check(proc, " ".join(args[-2:]))
    assert not marker.exists()


@pytest.mark.parametrize(
    "name", ["header-offsets-lie", "truncated-data", "empty", "no-format-tag", "lies-n-out", "nan-weights"]
)
@pytest.mark.parametrize("how", ["validate", "init-from", "resume"])
def test_every_variant_in_process(tiny_folder, trained, tmp_path, name, how):
    files = _hostile_files(trained / "models" / "last.safetensors", tmp_path, tmp_path / "UNPICKLED")
    common = ["--device", "cpu"]
    if how == "validate":
        args = ["validate", str(tiny_folder), "--model", str(files[name]), *common]
    else:
        run = str(tmp_path / "r")
        args = ["fit", str(tiny_folder), "--arch", "simple_cnn", "--size", "16", "--path", run,
                f"--{how}", str(files[name]), *common]  # fmt: skip
    result = CliRunner(env={"CI": "1"}).invoke(app, args)
    assert result.exit_code == 4, result.stderr
    one_error_line(result.stderr)
