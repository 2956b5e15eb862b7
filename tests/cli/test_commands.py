"""Each command through ``CliRunner``: tiny runs (simple_cnn, size 32, one epoch)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnkit.cli.app import app

runner = CliRunner(env={"CI": "1"})
TINY = [
    "--arch",
    "simple_cnn",
    "--epochs",
    "1",
    "--size",
    "32",
    "--bs",
    "8",
    "--seed",
    "0",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, image_folder) -> tuple[Path, str]:
    """A fit without --json: (run folder, its stdout)."""
    run = tmp_path_factory.mktemp("cli-run")
    result = runner.invoke(app, ["fit", str(image_folder), *TINY, "--lr", "1e-4:1e-2", "--path", str(run)])
    assert result.exit_code == 0, result.stderr
    return run, result.stdout


def test_fit_prints_the_epoch_table_then_the_result(fitted):
    run, out = fitted
    lines = out.splitlines()
    # mom is left to history.csv so the table fits 80 columns
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "lr", "time"]
    assert lines[1].split()[0] == "0"
    assert any(line.startswith("checkpoint") for line in lines)
    assert (run / "models" / "last.safetensors").is_file()


def test_fit_quiet_json_prints_only_the_object(image_folder, tmp_path):
    args = ["--quiet", "fit", str(image_folder), *TINY, "--path", str(tmp_path), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["epochs"] == 1


def test_validate_json(fitted, image_folder):
    run, _ = fitted
    result = runner.invoke(
        app, ["validate", str(image_folder), "--model", "last", "--path", str(run), "--json"]
    )
    assert result.exit_code == 0, result.stderr
    values = json.loads(result.stdout)
    assert 0 <= values["accuracy"] <= 1 and values["items"] == 12


def test_validate_plain_text(fitted, image_folder):
    run, _ = fitted
    result = runner.invoke(app, ["validate", str(image_folder), "--model", "last", "--path", str(run)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("valid_loss")


def test_summary_of_an_arch():
    result = runner.invoke(app, ["summary", "--arch", "simple_cnn", "--n-out", "3", "--size", "32"])
    assert result.exit_code == 0, result.stderr
    assert "Total params" in result.stdout and "Linear" in result.stdout


def test_summary_json_has_the_layers():
    result = runner.invoke(app, ["summary", "--arch", "simple_cnn", "--size", "32", "--json"])
    values = json.loads(result.stdout)
    assert values["layer_groups"] == 2 and values["layers"][0]["layer"] == "Conv2d"


@pytest.mark.parametrize("args", [[], ["--arch", "simple_cnn", "--model", "last"]])
def test_summary_needs_exactly_one_source(args):
    result = runner.invoke(app, ["summary", *args])
    assert result.exit_code == 2
    assert result.stderr == "error: give exactly one of --arch or --model\n"


def test_sample_writes_a_fittable_folder(tmp_path):
    result = runner.invoke(app, ["sample", "shapes", str(tmp_path / "shapes"), "--json"])
    assert result.exit_code == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["images"] > 0
    assert (tmp_path / "shapes" / "train").is_dir() and (tmp_path / "shapes" / "valid").is_dir()


def test_unknown_sample_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["sample", "nosuch", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr == "error: unknown sample 'nosuch'; known: shapes, shapes-seg\n"
    assert not any(tmp_path.iterdir())


def test_version():
    result = runner.invoke(app, ["version", "--json"])
    assert result.exit_code == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["learnkit"] and values["torch"]
    assert "cuda_devices" not in values  # devices only with --devices (they need torch imported)
    result = runner.invoke(app, ["version", "--devices", "--json"])
    assert result.exit_code == 0 and "cuda_devices" in json.loads(result.stdout)


def test_fit_one_cycle_json(image_folder, tmp_path):
    args = [
        "fit-one-cycle",
        str(image_folder),
        *TINY,
        "--lr",
        "1e-2",
        "--moms",
        "0.9,0.8",
        "--path",
        str(tmp_path),
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["epochs"] == 1 and "accuracy" in values
    assert (tmp_path / "models" / "last.safetensors").is_file()
