"""Issue 28, points 5-8 (what was done of them): the run lock survives its file's deletion, a lying
split record and implausible weights are exit 4, figures draw text literally, non-finite option
values and paths too long are exit 2.

Before: a second fit went ahead once ``.learnkit.lock`` was deleted; ``seed: -1`` or
``valid_pct: 0`` in a checkpoint's split record gave exit 1/2/3; a negative BatchNorm variance or
1e30 weights gave NaN predictions with exit 0; a class named ``$\\undefined$`` crashed the
confusion matrix; ``--mixup 1e309`` was exit 1; a 5,000-character path was exit 1.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from learnkit.checkpoint_schema import check_model_metadata
from learnkit.errors import CheckpointError
from learnkit.run_lock import LOCK_NAME, run_folder_lock

from .conftest import one_error_line, run_cli


def test_the_run_lock_holds_after_its_file_is_deleted(tmp_path):
    probe = (
        "import sys\nfrom learnkit.run_lock import run_folder_lock\nfrom learnkit.errors import UsageError\n"
        "try:\n    with run_folder_lock(sys.argv[1]):\n        print('took it')\n"
        "except UsageError as e:\n    print('refused:', e)\n"
    )
    with run_folder_lock(tmp_path):
        (tmp_path / LOCK_NAME).unlink()  # a user's cleanup while the run goes on
        out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
        assert out.stdout.startswith("refused: run folder"), out.stdout + out.stderr
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True)
    assert out.stdout.startswith("took it"), out.stdout + out.stderr  # released with the first run


@pytest.mark.parametrize(
    "split, field",
    [
        ({"kind": "pct", "valid_pct": 0.2, "seed": -1}, "valid_split.seed"),
        ({"kind": "pct", "valid_pct": 0.2, "seed": "7"}, "valid_split.seed"),
        ({"kind": "pct", "valid_pct": 0.2, "seed": 1e300}, "valid_split.seed"),
        ({"kind": "pct", "valid_pct": 0.2, "seed": None}, "valid_split.seed"),
        ({"kind": "pct", "valid_pct": 0, "seed": 1}, "valid_split.valid_pct"),
        ({"kind": "pct", "valid_pct": 1, "seed": 1}, "valid_split.valid_pct"),
        ({"kind": "folder", "name": ["valid"]}, "valid_split.name"),
    ],
)
def test_a_lying_split_record_is_a_checkpoint_error_naming_the_field(split, field):
    with pytest.raises(CheckpointError, match=field.replace(".", r"\.")):
        check_model_metadata({"valid_split": split}, "m.safetensors")


@pytest.mark.parametrize(
    "key, value, why",
    [
        ("1.running_var", -1.0, "negative"),
        ("0.weight", 1e30, "beyond"),
        ("1.running_mean", float("nan"), "NaN"),
    ],
)
def test_implausible_weights_are_refused_on_load(key, value, why):
    from learnkit.weights import load_weights

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state[key].view(-1)[0] = value
    with pytest.raises(CheckpointError, match=f"{key}.*{why}"):
        load_weights(model, state, "m.safetensors")


def test_class_names_with_dollars_are_drawn_as_typed(tmp_path):
    from learnkit.plots import new_figure, save_figure

    fig, ax = new_figure()
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["$\\undefined$", "a$b"])
    ax.set_title("$x^$")
    assert save_figure(fig, tmp_path / "cm.png").stat().st_size > 0


@pytest.mark.parametrize("option", ["--mixup 1e309", "--cutmix inf", "--max-zoom 1e309", "--max-rotate nan"])
def test_non_finite_option_values_are_usage_errors(tmp_path, option):
    proc = run_cli(
        "fit", "sample:shapes", "--arch", "simple_cnn", *option.split(), "--path", str(tmp_path / "r")
    )
    assert proc.returncode == 2, proc.stderr
    assert "finite" in one_error_line(proc.stderr)
    assert not (tmp_path / "r").exists()


# numbers a float or an int cannot hold, in every numeric option of the commands that take them
# (before: an int past 2**63 reached torch, "OverflowError: int too big to convert" or "Overflow
# when unpacking long long", exit 1); each is one line and exit 2, before anything is read
HUGE = "99999999999999999999"
NUMERIC_FUZZ = [
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--accum", HUGE),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--seed", HUGE),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--size", "nan"),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--bs", "nan"),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--epochs", "nan"),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--valid-pct", "nan"),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--max-lighting", "nan"),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--lr", "nan:1e-3"),
    ("fit", "sample:shapes", "--arch", "simple_cnn", "--lr", "1e-5:1e309"),
    ("fit-one-cycle", "sample:shapes", "--arch", "simple_cnn", "--moms", "nan,0.9"),
    ("fit-one-cycle", "sample:shapes", "--arch", "simple_cnn", "--pct-start", "-nan"),
    ("unet", "sample:shapes-seg", "--arch", "simple_cnn", "--y-range", "0,inf"),
    ("lr-find", "sample:shapes", "--arch", "simple_cnn", "--start-lr", "nan"),
    ("lr-find", "sample:shapes", "--arch", "simple_cnn", "--num-it", "nan"),
    ("validate", "sample:shapes", "--valid-pct", "nan"),
    ("tta", "sample:shapes", "--tta-scale", "nan"),
    ("tta", "sample:shapes", "--beta", "inf"),
    ("summary", "--arch", "simple_cnn", "--n-out", HUGE),
    ("summary", "--arch", "simple_cnn", "--size", "1e309"),
    ("zoo", "show", "simple_cnn", "--n-out", HUGE),
    ("report", "no-run", "--bs", HUGE),
    ("predict", "x.png", "--topk", "nan"),
    # bounds of the commands' own options (before, in main's light coercion: not checked at all)
    ("tta", "sample:shapes", "--beta", "2"),
    ("zoo", "show", "simple_cnn", "--n-out", "0"),
    ("predict", "x.png", "--topk", "0"),
]


@pytest.mark.parametrize("args", NUMERIC_FUZZ, ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_numbers_no_option_can_hold_are_one_line_and_exit_2(tmp_path, args):
    proc = (
        run_cli(*args, "--path", str(tmp_path / "r")) if args[0] not in ("zoo", "report") else run_cli(*args)
    )
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc.stderr)
    assert args[-2] in line and "NaN to integer" not in line and "Overflow" not in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "key, value",
    [("data.size", ".nan"), ("data.bs", ".inf"), ("schedule.accum", HUGE), ("runtime.seed", ".nan")],
)
def test_numbers_no_option_can_hold_in_a_config_file_are_exit_2(tmp_path, key, value):
    section, name = key.split(".")
    (tmp_path / "c.yaml").write_text(f"{section}:\n  {name}: {value}\n")
    proc = run_cli("fit", "sample:shapes", "--arch", "simple_cnn", "--config", str(tmp_path / "c.yaml"))
    assert proc.returncode == 2, proc.stderr
    assert f"({key})" in one_error_line(proc.stderr)


def test_a_path_too_long_is_a_usage_error(tmp_path):
    proc = run_cli("fit", "a" * 5000, "--arch", "simple_cnn", "--path", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr
    assert "too long" in one_error_line(proc.stderr) and len(proc.stderr) < 300


def test_weights_checked_on_a_real_checkpoint(tmp_path):
    """A BatchNorm variance made negative in a saved checkpoint: load_learner says so (exit 4)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from learnkit.vision.learners import load_learner

    from .test_hardening_data import _png

    for split in ("train", "valid"):
        for name, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
            _png(tmp_path / "d" / split / name / "0.png", colour, size=16)
    from learnkit.data import ImageDataBunch
    from learnkit.vision.learners import cnn_learner

    data = ImageDataBunch.from_folder(tmp_path / "d", size=16, bs=2, device="cpu", augment=False)
    file = cnn_learner(data, "simple_cnn", path=tmp_path / "run").save("m")
    with safe_open(file, "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    var = next(k for k in tensors if k.endswith("running_var"))
    tensors[var] = -torch.ones_like(tensors[var])
    save_file(tensors, str(file), metadata=meta)
    with pytest.raises(CheckpointError, match="negative"):
        load_learner(file, device="cpu")


def test_a_full_disk_names_the_file_being_written_and_what_is_intact(tmp_path):
    import errno
    import os

    from learnkit.atomic import write_atomically
    from learnkit.cli.group import _describe

    target = tmp_path / "config.yaml"
    target.write_text("old")

    def full(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as err:
        write_atomically(target, full)
    assert err.value.filename == str(target) and target.read_text() == "old"
    message, code = _describe(err.value)
    assert code == 1 and str(target) in message and "no space left on device" in message
    assert "intact" in message and "Errno" not in message


def test_a_checkpoint_whose_stem_takes_one_channel_is_a_checkpoint_error(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from learnkit.data import ImageDataBunch
    from learnkit.jobs.info import summary
    from learnkit.vision.learners import cnn_learner, load_learner
    from learnkit.vision.models import build_model

    from .test_hardening_data import _png

    for split in ("train", "valid"):
        for name, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200))):
            _png(tmp_path / "d" / split / name / "0.png", colour, size=16)
    data = ImageDataBunch.from_folder(tmp_path / "d", size=16, bs=2, device="cpu", augment=False)
    file = cnn_learner(data, "simple_cnn", path=tmp_path / "run").save("m")
    with safe_open(file, "pt") as f:
        meta = f.metadata()
    spec = json.loads(meta["model_spec"])
    spec["kwargs"] = {**(spec.get("kwargs") or {}), "in_channels": 1}
    model, _ = build_model(spec)
    meta["model_spec"] = json.dumps(spec)
    meta.pop("norm_stats", None)  # three channels of statistics would be refused first
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file), metadata=meta)
    with pytest.raises(CheckpointError, match="1-channel"):
        load_learner(file, device="cpu")
    with pytest.raises(CheckpointError, match="1-channel"):
        summary(model=file)
