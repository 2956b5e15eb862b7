"""Issue 13 through the installed command: degenerate data, options after the command, pipes,
NUL-separated stdin, errors naming the real cause, progress on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import _env, learnkit_exe, make_image_folder, run_learnkit

TINY = ["--arch", "simple_cnn", "--size", "16", "--bs", "8", "--device", "cpu", "--epochs", "1"]


def test_data_one_folder_too_deep_is_refused_naming_the_class_and_the_fix(tmp_path, image_folder):
    for name in ("blue", "red"):
        shutil.copytree(image_folder / "train" / name, tmp_path / "flat" / "outer" / name)
    proc = run_learnkit(
        "fit", str(tmp_path / "flat"), *TINY, "--valid-pct", "0.2", "--path", str(tmp_path / "r")
    )
    assert proc.returncode == 3, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert "only one class, 'outer'" in line and "one folder too deep" in line and "outer as DATA" in line
    assert not (tmp_path / "r" / "models").exists()  # refused before any training


def test_a_validation_class_unknown_to_training_is_exit_3(tmp_path):
    make_image_folder(tmp_path / "d", classes=("blue", "red"), n_train=2, n_valid=1)
    make_image_folder(tmp_path / "extra", classes=("green",), n_train=1, n_valid=1)
    shutil.copytree(tmp_path / "extra" / "valid" / "green", tmp_path / "d" / "valid" / "green")
    proc = run_learnkit("fit", str(tmp_path / "d"), *TINY, "--path", str(tmp_path / "r"))
    assert proc.returncode == 3
    assert "validation class 'green' is unknown to training" in proc.stderr


def test_debug_and_quiet_after_the_command(tmp_path):
    proc = run_learnkit("validate", "sample:shapes", "--model", "nosuch", "--path", str(tmp_path), "--debug")
    assert proc.returncode == 4
    assert "Traceback" in proc.stderr and "No such option" not in proc.stderr
    proc = run_learnkit("zoo", "list", "resnet18", "-q")
    assert proc.returncode == 0 and proc.stdout.split()[5] == "resnet18"


def test_predict_into_a_closed_pipe_exits_0_under_pipefail(trained, image_folder):
    cmd = (
        f"set -o pipefail; '{learnkit_exe()}' predict '{image_folder / 'valid'}' --model last "
        f"--path '{trained['path']}' --json | head -n1"
    )
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and proc.stderr == ""


def test_help_into_a_closed_pipe_exits_0():
    cmd = f"set -o pipefail; '{learnkit_exe()}' fit --help | head -n1"
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_predict_reads_nul_separated_stdin(trained, image_folder):
    images = sorted((image_folder / "valid").rglob("*.png"))[:3]
    stdin = "\0".join(str(p) for p in images) + "\0"
    args = [learnkit_exe(), "predict", "-", "--model", "last", "--path", str(trained["path"]), "--json"]
    proc = subprocess.run([*args, "-0"], input=stdin, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["path"] for line in proc.stdout.splitlines()] == [str(p) for p in images]
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 3 and "--null (-0)" in proc.stderr


def test_a_glob_matching_nothing_says_so(trained):
    proc = run_learnkit("predict", "more/*.jpeg", "--model", "last", "--path", str(trained["path"]))
    assert proc.returncode == 3
    assert "no file matches more/*.jpeg" in proc.stderr


def test_path_on_a_file_and_fp16_on_cpu_are_usage_errors(tmp_path, image_folder):
    (tmp_path / "afile").write_text("x")
    proc = run_learnkit("fit", str(image_folder), *TINY, "--path", str(tmp_path / "afile"))
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr
    proc = run_learnkit("fit", str(image_folder), *TINY, "--precision", "fp16", "--path", str(tmp_path / "r"))
    assert proc.returncode == 2 and "bf16" in proc.stderr


def test_classification_checkpoint_on_segmentation_data_names_the_mismatch(trained, tmp_path):
    proc = run_learnkit("sample", "shapes-seg", str(tmp_path / "seg"))
    assert proc.returncode == 0, proc.stderr
    proc = run_learnkit("validate", str(tmp_path / "seg"), "--model", "last", "--path", str(trained["path"]))
    assert proc.returncode == 3
    assert "is a classification checkpoint" in proc.stderr and "segmentation folder" in proc.stderr


def test_classes_differing_from_the_checkpoint_are_exit_3(trained, tmp_path):
    make_image_folder(tmp_path / "d", classes=("blue", "green"), n_train=2, n_valid=1)
    proc = run_learnkit("validate", str(tmp_path / "d"), "--model", "last", "--path", str(trained["path"]))
    assert proc.returncode == 3
    assert "missing red" in proc.stderr and "not in the checkpoint: green" in proc.stderr


@pytest.mark.parametrize("value, live", [("false", True), ("0", True), ("", True), ("true", False)])
def test_ci_counts_only_when_true(value, live):
    from learnkit.interactive import under_ci

    assert under_ci({"CI": value}) is (not live)


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal and stdout on a pipe: (exit code, stdout, terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    proc.wait()
    os.close(master)
    return proc.returncode, out, seen.decode(errors="replace")


def test_lr_find_shows_a_live_bar_with_lr_and_loss_on_a_terminal(image_folder, tmp_path):
    env = {k: v for k, v in _env().items() if k != "CI"} | {"CI": "false"}
    args = [
        learnkit_exe(),
        "lr-find",
        str(image_folder),
        *TINY[:-2],
        "--num-it",
        "12",
        "--path",
        str(tmp_path),
    ]
    code, out, terminal = _on_a_terminal(args, env)
    assert code == 0, terminal
    assert "lr-find" in terminal and "\r" in terminal  # a live bar, redrawn in place
    assert "lr " in terminal and "loss " in terminal
    assert "suggestion" in out and "lr-find" not in out


def test_lr_find_prints_plain_lines_under_ci(image_folder, tmp_path):
    args = [*TINY[:-2], "--num-it", "10", "--path", str(tmp_path)]
    proc = run_learnkit("lr-find", str(image_folder), *args)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("lr-find ")]
    assert lines and "\r" not in proc.stderr and lines[-1].startswith("lr-find 10/10  lr ")


def test_fit_rows_on_stdout_stay_clean_while_the_bar_is_on_the_terminal(image_folder, tmp_path):
    env = {k: v for k, v in _env().items() if k != "CI"}
    args = [learnkit_exe(), "fit", str(image_folder), *TINY[:-1], "2", "--path", str(tmp_path / "r")]
    code, out, terminal = _on_a_terminal(args, env)
    assert code == 0, terminal
    rows = out.splitlines()
    assert rows[0].split()[:3] == ["epoch", "train_loss", "valid_loss"] and rows[1].split()[0] == "0"
    assert "\x1b" not in out and "\r" not in out  # stdout (| tee) carries only the table
    assert "loss " in terminal  # the bar shows the running loss


def test_library_fit_prints_the_epoch_table_unless_quiet(tmp_path):
    code = (
        "from tests.core.tiny import tiny_data, tiny_model\n"
        "from learnkit import Learner\n"
        "import sys\n"
        "Learner(tiny_data(), tiny_model(), quiet=len(sys.argv) > 1).fit(2, 1e-2)\n"
    )
    script = tmp_path / "fit.py"
    script.write_text(code)
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in _env().items() if k != "CI"} | {"PYTHONPATH": str(root)}
    import sys

    master, slave = pty.openpty()
    for quiet, expect in (([], True), (["q"], False)):
        proc = subprocess.run(
            [sys.executable, str(script), *quiet], stdout=slave, stderr=subprocess.PIPE, env=env
        )
        assert proc.returncode == 0, proc.stderr
        ready, _, _ = select.select([master], [], [], 1)
        seen = os.read(master, 65536).decode() if ready else ""
        assert ("train_loss" in seen) is expect
    os.close(master)
    os.close(slave)
    piped = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    # piped, as fastai v1 (fastprogress): the table lines, no bar
    assert piped.returncode == 0 and piped.stdout.splitlines()[0].split()[:2] == ["epoch", "train_loss"]
    assert len(piped.stdout.splitlines()) == 3 and "\r" not in piped.stdout


def test_tta_options_and_flips_follow_the_training(trained, image_folder):
    args = ["tta", str(image_folder), "--model", "last", "--path", str(trained["path"]), "--json"]
    proc = run_learnkit(*args, "--tta-scale", "1.1", "--beta", "0.5", "--no-tta-flip")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["scale"], result["beta"], result["flip"]) == (1.1, 0.5, False)
    assert "note: validating on the fit's own split" in proc.stderr
    proc = run_learnkit(*args)
    # the fixture trained with the default preset, ``none``: no flips, so TTA averages none
    assert proc.returncode == 0 and json.loads(proc.stdout)["flip"] is False


def test_trained_with_flips_reads_the_run_config():
    from learnkit.jobs.tta import trained_with_flips

    def meta(**data):
        return {"config": {"command": "fit", "data": {"data": "d", **data}, "model": {"arch": "simple_cnn"}}}

    assert trained_with_flips({}) is True  # no config: learnkit's former default flipped
    assert trained_with_flips(meta(flip=False)) is True  # no preset recorded: before the presets
    # RunConfig's data section, read as any config is: the flip knob when set, else the preset's
    assert trained_with_flips(meta(aug="none", flip=None)) is False
    assert trained_with_flips(meta(aug="light", flip=None)) is True
    assert trained_with_flips(meta(aug="fastai", flip=False)) is False
    assert trained_with_flips(meta(aug="none", flip=True)) is True
    assert trained_with_flips(meta(aug="none", flip="yes")) is True  # not a config: the old default


def test_validate_defaults_to_the_fits_own_pct_split(tmp_path, image_folder):
    flat = tmp_path / "flat"
    for name in ("blue", "red"):
        shutil.copytree(image_folder / "train" / name, flat / name)
    run = str(tmp_path / "r")
    proc = run_learnkit(
        "fit", str(flat), *TINY, "--valid-pct", "0.25", "--seed", "7", "--path", run, "--json"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(Path(p).name for p in json.loads(proc.stdout)["plots"]) == [
        "losses.png",
        "lr.png",
        "metrics.png",
    ]
    assert proc.stderr.count("plot: ") == 3
    fitted = json.loads(proc.stdout)["valid_loss"]
    proc = run_learnkit("validate", str(flat), "--model", "last", "--path", run, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid_loss"] == pytest.approx(fitted, abs=1e-6)
    assert "fit's own split (--valid-pct 0.25 --seed 7" in proc.stderr
    proc = run_learnkit("validate", str(flat), "--model", "last", "--path", run, "--seed", "3")
    assert proc.returncode == 0 and "as asked: not the fit's own split" in proc.stderr


def test_validate_defaults_to_the_fits_own_split_of_a_labels_csv(tmp_path, image_folder):
    # before: a labels.csv run recorded no split, so `validate` with no flags failed (no is_valid
    # column) and `--valid-pct 0.25` alone scored seed 0's split, training images included
    data = tmp_path / "csv"
    (data / "img").mkdir(parents=True)
    rows = ["name,label"]
    for name in ("blue", "red"):
        for img in sorted((image_folder / "train" / name).iterdir()):
            shutil.copy(img, data / "img" / f"{name}-{img.name}")
            rows.append(f"img/{name}-{img.name},{name}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    run = str(tmp_path / "r")
    proc = run_learnkit(
        "fit", str(data), *TINY, "--valid-pct", "0.25", "--seed", "7", "--path", run, "--json"
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    fitted = json.loads(proc.stdout)["valid_loss"]
    proc = run_learnkit("validate", str(data), "--model", "last", "--path", run, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid_loss"] == pytest.approx(fitted, abs=1e-6)
    assert "fit's own split (--valid-pct 0.25 --seed 7" in proc.stderr


@pytest.mark.parametrize("columns", [60, 120])
def test_help_follows_the_width_and_colours_only_when_asked(columns):
    """The help is drawn without rich (start-up time): its boxes follow COLUMNS, names are bold cyan
    only with FORCE_COLOR (or a colour terminal), never when piped."""
    env = _env() | {"COLUMNS": str(columns), "TERM": "dumb"}
    plain = subprocess.run(
        [learnkit_exe(), "fit", "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert plain.returncode == 0, plain.stderr
    boxes = [line for line in plain.stdout.splitlines() if line.startswith(("╭", "│", "╰"))]
    assert boxes and {len(line) for line in boxes} == {columns}  # every box line exactly the width
    assert max(map(len, plain.stdout.splitlines())) <= columns and "\x1b[" not in plain.stdout
    env = {k: v for k, v in env.items() if k != "NO_COLOR"} | {"FORCE_COLOR": "1"}
    coloured = subprocess.run(
        [learnkit_exe(), "fit", "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert "\x1b[1;36m--lr LR\x1b[0m" in coloured.stdout
    strip = coloured.stdout.replace("\x1b[1;36m", "").replace("\x1b[1m", "").replace("\x1b[0m", "")
    assert strip == plain.stdout


@pytest.mark.parametrize("command", ["fit-one-cycle", "fit", "unet", "lr-find", "validate", "predict", "tta"])
def test_help_fits_80_columns_in_panels_without_noise(command):
    env = _env() | {"COLUMNS": "80", "TERM": "dumb"}
    proc = subprocess.run(
        [learnkit_exe(), command, "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 70 and max(map(len, lines)) <= 80
    assert "<bool>" not in proc.stdout and "9223372036854775807" not in proc.stdout
    assert "x>=" not in proc.stdout  # no ranges
    assert (
        "─ Runtime " in proc.stdout and "--debug" in proc.stdout and "--install-completion" not in proc.stdout
    )
    if command.startswith("fit"):
        for panel in ("Data", "Model", "Schedule", "Checkpoints"):
            assert f"─ {panel} " in proc.stdout
