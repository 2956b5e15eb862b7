"""A run's config from the command line: --config, --print-config, config.yaml, best by default,
never overwriting a run, --exist-ok, resuming only the same run, history's lr and mom columns, and
unet sharing fit-one-cycle's options."""

import json
import re

import pytest
import yaml
from safetensors.numpy import load_file
from typer.testing import CliRunner

from learnkit.checkpoint import read_safetensors
from learnkit.cli.app import app
from learnkit.jobs.train import wait_for_plots
from learnkit.schedules import OneCycleSchedule

cli = CliRunner(env={"CI": "1", "COLUMNS": "200"})
TINY = ["--arch", "simple_cnn", "--size", "16", "--bs", "16", "--device", "cpu", "--deterministic"]


def _fit(*args: str, command: str = "fit-one-cycle"):
    return cli.invoke(app, [command, *args])


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, image_folder):
    """One 2-epoch fit-one-cycle run (shared by the tests that only read it or refuse to touch it)."""
    folder = image_folder
    path = tmp_path_factory.mktemp("runs") / "run"
    result = _fit(
        str(folder), *TINY, "--epochs", "2", "--lr", "2e-3", "--seed", "3", "--path", str(path), "--json"
    )
    assert result.exit_code == 0, result.stderr
    wait_for_plots()  # drawn by a thread of this process: the run folder is complete after it
    return {"path": path, "data": folder, "result": json.loads(result.stdout)}


def test_a_fit_writes_its_whole_config_and_the_checkpoints_carry_it(first_run):
    path = first_run["path"]
    saved = yaml.safe_load((path / "config.yaml").read_text())
    assert saved["command"] == "fit-one-cycle"
    assert saved["schedule"]["lr"] == 2e-3 and saved["schedule"]["pct_start"] == 0.3  # a default too
    assert saved["runtime"]["seed"] == 3 and saved["data"]["size"] == 16
    assert saved["data"]["data"] == str(first_run["data"].resolve())  # absolute: replays from anywhere
    assert set(saved["versions"]) == {"learnkit", "torch"}
    _, meta = read_safetensors(path / "models" / "last.safetensors")
    assert meta["config"] == {k: v for k, v in saved.items() if k not in ("versions", "segments")}
    assert saved["segments"] == [2]  # one training of 2 epochs
    assert first_run["result"]["config"] == str(path / "config.yaml")


def test_best_is_kept_by_default_and_says_what_made_it_best(first_run):
    path = first_run["path"]
    _, meta = read_safetensors(path / "models" / "best.safetensors")
    best = meta["best"]
    history = first_run["result"]["history"]
    losses = [row["valid_loss"] for row in history]
    assert best["monitor"] == "valid_loss"
    assert best["epoch"] == losses.index(min(losses))
    result = first_run["result"]  # the fit's result says it too
    assert (result["best_epoch"], result["best_monitor"]) == (best["epoch"], "valid_loss")
    assert result["best_value"] == pytest.approx(min(losses))
    assert best["value"] == pytest.approx(min(losses))
    result = cli.invoke(app, ["summary", "--model", "best", "--path", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["epoch"], shown["monitor"]) == (best["epoch"], "valid_loss")
    assert shown["value"] == pytest.approx(best["value"])


def test_history_has_the_recorders_columns_with_lr_and_mom(first_run):
    header, *rows = (first_run["path"] / "history.csv").read_text().splitlines()
    assert header == "epoch,train_loss,valid_loss,accuracy,lr,mom,time"
    history = first_run["result"]["history"]
    assert list(history[0]) == header.split(",")
    # 24 training images in batches of 16: one batch an epoch (the last, partial one dropped), so
    # each row holds the 2-iteration cycle's value at iterations 0 and 1
    cycle = OneCycleSchedule(2, (2e-3,))
    assert [row["lr"] for row in history] == pytest.approx([cycle.lrs_at(0)[-1], cycle.lrs_at(1)[-1]])
    assert [row["mom"] for row in history] == pytest.approx([cycle.mom_at(0), cycle.mom_at(1)])
    assert float(rows[-1].split(",")[4]) == pytest.approx(history[-1]["lr"])


def test_a_second_fit_into_a_run_is_refused_and_changes_no_file(first_run):
    path = first_run["path"]
    before = _files(path)
    result = _fit(str(first_run["data"]), *TINY, "--epochs", "1", "--path", str(path))
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "--resume" in line and "--init-from" in line and "--exist-ok" in line
    assert _files(path) == before


def test_exist_ok_replaces_the_run(tmp_path, image_folder):
    path = tmp_path / "run"
    base = [str(image_folder), *TINY, "--seed", "0", "--path", str(path)]
    assert _fit(*base, "--epochs", "2", command="fit").exit_code == 0
    (path / "report.html").write_text("old")  # the old run's outputs go with it ...
    (path / "plots").mkdir(exist_ok=True)  # the fit's own plots may still be drawing (a thread)
    (path / "plots" / "confusion_matrix.png").write_bytes(b"old")
    (path / "notes.txt").write_text("mine")  # ... what is not a run output stays
    result = _fit(*base, "--epochs", "1", "--lr", "1e-3", "--exist-ok", "--json", command="fit")
    assert result.exit_code == 0, result.stderr
    assert not (path / "report.html").exists() and not (path / "plots" / "confusion_matrix.png").exists()
    assert (path / "notes.txt").read_text() == "mine"
    assert len((path / "history.csv").read_text().splitlines()) == 2  # header + the new run's one epoch
    assert yaml.safe_load((path / "config.yaml").read_text())["schedule"]["epochs"] == 1


def test_replaying_the_saved_config_gives_identical_weights(first_run, tmp_path):
    replay = tmp_path / "replay"
    result = _fit("--config", str(first_run["path"] / "config.yaml"), "--path", str(replay))
    assert result.exit_code == 0, result.stderr
    a = load_file(first_run["path"] / "models" / "last.safetensors")
    b = load_file(replay / "models" / "last.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_command_line_options_override_the_config_file(first_run, tmp_path):
    args = ["--config", str(first_run["path"] / "config.yaml"), "--lr", "5e-4", "--path", str(tmp_path / "x")]
    result = _fit(*args, "--print-config")
    assert result.exit_code == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["schedule"]["lr"] == 5e-4  # given: wins
    assert shown["schedule"]["epochs"] == 2 and shown["runtime"]["seed"] == 3  # from the file
    assert shown["checkpoint"]["path"] == str(tmp_path / "x")
    assert shown["data"]["bs"] == 16  # the file's, not the command's default 64


def test_print_config_writes_nothing_and_records_a_drawn_seed(tmp_path, image_folder):
    result = _fit(str(image_folder), *TINY, "--path", str(tmp_path / "p"), "--print-config")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "p").exists()
    shown = yaml.safe_load(result.stdout)
    assert isinstance(shown["runtime"]["seed"], int)  # drawn, so a replay repeats the run
    assert shown["model"]["arch"] == "simple_cnn"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("command: fit\ndata: {data: x}\nmodel: {arch: simple_cnn}\n", "learnkit fit"),
        ("data: {bsz: 3}\n", "bsz"),
    ],
)
def test_a_config_of_another_command_or_with_an_unknown_key_is_exit_2(tmp_path, text, named):
    file = tmp_path / "c.yaml"
    file.write_text(text)
    result = cli.invoke(app, ["unet", "--config", str(file), "--print-config"])
    assert result.exit_code == 2
    assert named in result.stderr


def test_missing_data_and_arch_are_named():
    result = cli.invoke(app, ["fit", "--print-config"])
    assert result.exit_code == 2
    assert "DATA and --arch" in result.stderr


def test_resume_refuses_a_changed_run_naming_the_fields(first_run):
    path = str(first_run["path"])
    result = _fit(
        str(first_run["data"]),
        *TINY,
        "--epochs",
        "2",
        "--lr",
        "1e-2",
        "--bs",
        "8",
        "--path",
        path,
        "--resume",
        "last",
    )
    assert result.exit_code == 2
    line = result.stderr.strip().splitlines()[-1]
    assert "schedule.lr" in line and "data.bs" in line and "--init-from" in line


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path, image_folder):
    path = tmp_path / "run"
    base = [str(image_folder), *TINY, "--seed", "0", "--path", str(path), "--json"]
    assert _fit(*base, "--epochs", "1").exit_code == 0
    same = _fit(*base, "--epochs", "1", "--resume", "last")
    assert same.exit_code == 0 and "note" in json.loads(same.stdout)  # finished: nothing to train
    result = _fit(*base, "--epochs", "2", "--resume", "last")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert [row["epoch"] for row in out["history"]] == [0, 1]
    assert out["resumed_from"] == {"epoch": 1, "batch": 0}
    saved = yaml.safe_load((path / "config.yaml").read_text())
    assert saved["schedule"]["epochs"] == 2 and saved["segments"] == [1, 2]  # trained as 1, then to 2
    assert len((path / "history.csv").read_text().splitlines()) == 3
    replay = _fit("--config", str(path / "config.yaml"), "--print-config")
    assert replay.exit_code == 0 and "segments" not in replay.stdout
    assert "trained in 2 segments (--epochs 1, then --resume --epochs 2)" in replay.stderr


def _options(command: str) -> dict[str, str]:
    """``--option`` -> its definition as click holds it: names, help text, type (ranges included)."""
    import click
    from typer.main import get_command

    group = get_command(app)
    cmd = group.get_command(click.Context(group), command)
    out = {}
    for param in cmd.params:
        if param.param_type_name == "option":
            names = " ".join(sorted([*param.opts, *param.secondary_opts]))
            text = re.sub(r"\s+", " ", param.help or "")
            kind = param.type_descriptor.annotation
            out[names] = f"{text} | {param.min} | {param.max} | {param.metavar} | {kind}"
    return out


def test_unet_shares_every_fit_one_cycle_option_that_acts_on_masks_with_the_same_definition():
    cycle, unet = _options("fit-one-cycle"), _options("unet")
    classify_only = {
        "--class-weights",
        "--cutmix",
        "--label-delim",
        "--label-smoothing",
        "--mixup",
        "--thresh",
    }
    shared = set(cycle) - {"--dry-run"} - classify_only
    assert shared <= set(unet), sorted(shared - set(unet))
    assert not classify_only & set(unet)  # unet offered and ignored them before the schema
    assert {k: cycle[k] for k in shared} == {k: unet[k] for k in shared}
    assert "--blur" in unet and "--blur" not in cycle  # the U-Net's own stay its own
