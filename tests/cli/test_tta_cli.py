"""``learnkit tta`` (loss and metrics without and with TTA) and ``learnkit validate --plots``.

The model is the session's one tiny fit (``trained``: simple_cnn, 32 px, blue/red colours).
"""

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from learnkit.cli.app import app
from learnkit.cli.tta import render_tta

from .conftest import run_learnkit

runner = CliRunner(env={"CI": "1"})
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model(trained) -> list[str]:
    """The options naming the session's trained checkpoint."""
    return ["--model", "last", "--path", str(trained["path"]), "--device", "cpu"]


def test_tta_json_has_the_tta_metrics_on_top_and_both_sets(model, image_folder):
    proc = run_learnkit("tta", str(image_folder), *model, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["plain"]) == set(result["tta"]) == {"valid_loss", "accuracy"}
    assert result["accuracy"] == result["tta"]["accuracy"]
    assert result["valid_loss"] == result["tta"]["valid_loss"]
    assert (result["items"], result["beta"], result["scale"]) == (12, 0.4, 1.35)


def test_tta_plain_figures_are_validate_figures(model, image_folder):
    tta = json.loads(runner.invoke(app, ["tta", str(image_folder), *model, "--json"]).stdout)
    plain = json.loads(runner.invoke(app, ["validate", str(image_folder), *model, "--json"]).stdout)
    assert tta["plain"]["accuracy"] == pytest.approx(plain["accuracy"])
    assert tta["plain"]["valid_loss"] == pytest.approx(plain["valid_loss"], rel=1e-5)


def test_beta_1_is_the_plain_prediction(model, image_folder):
    result = runner.invoke(app, ["tta", str(image_folder), *model, "--beta", "1", "--json"])
    assert result.exit_code == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["tta"] == values["plain"]


def test_tta_text_puts_plain_and_tta_side_by_side(model, image_folder):
    result = runner.invoke(app, ["tta", str(image_folder), *model, "--scale", "1.2"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["metric", "plain", "tta"]
    assert [line.split()[0] for line in lines[1:3]] == ["valid_loss", "accuracy"]
    assert "scale  1.200000" in result.stdout


@pytest.mark.parametrize("option", [["--beta", "1.5"], ["--scale", "0.5"]])
def test_tta_out_of_range_options_are_usage_errors(model, image_folder, option):
    result = runner.invoke(app, ["tta", str(image_folder), *model, *option])
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("error: Invalid value for '") and option[0] in result.stderr.splitlines()[0]
    )


def test_tta_without_the_checkpoint_is_exit_4(trained, image_folder):
    result = runner.invoke(app, ["tta", str(image_folder), "--model", "nope", "--path", str(trained["path"])])
    assert result.exit_code == 4 and result.stderr.startswith("error: no checkpoint")


def test_validate_plots_writes_real_pngs_and_prints_their_paths(model, trained, image_folder):
    result = runner.invoke(app, ["validate", str(image_folder), *model, "--plots", "--json"])
    assert result.exit_code == 0, result.stderr
    plots = [Path(p) for p in json.loads(result.stdout)["plots"]]
    assert [p.name for p in plots] == ["confusion_matrix.png", "top_losses.png"]
    for plot in plots:
        assert plot.parent == trained["path"] / "plots"
        assert plot.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(plot) as img:
            assert img.width > 100 and img.height > 100
    text = runner.invoke(app, ["validate", str(image_folder), *model, "--plots"])
    assert all(f"plot: {p}" in text.stderr.splitlines() for p in plots)  # on stderr, as a fit's
    assert not any(str(p) in text.stdout for p in plots)


def test_validate_without_plots_writes_none(model, image_folder):
    result = runner.invoke(app, ["validate", str(image_folder), *model, "--json"])
    assert "plots" not in json.loads(result.stdout)


def test_render_tta_text():
    result = {
        "valid_loss": 0.25, "accuracy": 0.9, "plain": {"valid_loss": 0.5, "accuracy": 0.8},
        "tta": {"valid_loss": 0.25, "accuracy": 0.9},
        "items": 10, "beta": 0.4, "scale": 1.35, "model": "m.safetensors",
    }  # fmt: skip
    buffer = io.StringIO()
    render_tta(result, Console(file=buffer, width=100, force_terminal=False, color_system=None))
    assert buffer.getvalue().splitlines() == [
        "metric      plain     tta",
        "valid_loss  0.500000  0.250000",
        "accuracy    0.800000  0.900000",
        "items  10",
        "beta   0.400000",
        "scale  1.350000",
        "model  m.safetensors",
    ]
