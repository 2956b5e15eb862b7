"""``learnkit predict``: the installed command in pipelines (JSON Lines, stdin, CSV, a corrupt image),
the rest through ``CliRunner``, and the row rendering on ``StringIO`` consoles.

The classifier is the session's one tiny fit (``trained``: simple_cnn, 32 px, blue/red colours).
"""

import csv
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from learnkit.cli.app import app
from learnkit.cli.predict import csv_cells, csv_columns, render_predictions

from .conftest import learnkit_exe

runner = CliRunner(env={"CI": "1"})
CLASSES = {"blue", "red"}
ODD_NAME = "dossier été, v2/ciel bleu, n°1.png"  # spaces, commas and non-ASCII in one path


def run_learnkit(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """The installed ``learnkit``, as a user runs it (``input`` on its stdin)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")} | {"CI": "1"}
    return subprocess.run(
        [learnkit_exe(), *args], input=input, capture_output=True, text=True, env=env, timeout=120
    )


def _valid_images(image_folder: Path) -> list[Path]:
    return sorted((image_folder / "valid").rglob("*.png"))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def model(trained) -> list[str]:
    """The options naming the session's trained checkpoint."""
    return ["--model", "last", "--path", str(trained["path"]), "--device", "cpu"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, image_folder) -> Path:
    """``1.png``, ``2.png`` (random bytes), ``3.png``, and a copy at an awkward path (see ODD_NAME)."""
    folder = tmp_path_factory.mktemp("mixed")
    blue, red = _valid_images(image_folder)[0], _valid_images(image_folder)[-1]
    shutil.copy(blue, folder / "1.png")
    (folder / "2.png").write_bytes(bytes(range(256)) * 2)
    shutil.copy(red, folder / "3.png")
    (folder / ODD_NAME).parent.mkdir()
    shutil.copy(blue, folder / ODD_NAME)
    return folder


# --- the installed command, as a pipeline meets it ---
def test_folder_json_gives_one_parsed_line_per_image(model, image_folder):
    proc = run_learnkit("predict", str(image_folder / "valid"), *model, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = _json_lines(proc.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in _valid_images(image_folder)]
    for row in rows:
        assert row["label"] in CLASSES and 0.5 <= row["probability"] <= 1.0
        assert "error" not in row


def test_dash_reads_paths_from_stdin(model, image_folder, mixed):
    paths = [str(p) for p in _valid_images(image_folder)[:3]] + [str(mixed / ODD_NAME)]
    proc = run_learnkit("predict", "-", *model, "--json", input="\n".join(paths) + "\n")
    assert proc.returncode == 0, proc.stderr
    assert [r["path"] for r in _json_lines(proc.stdout)] == paths


def test_csv_has_a_header_and_one_row_per_image(model, mixed):
    proc = run_learnkit("predict", str(mixed / "1.png"), str(mixed / ODD_NAME), *model, "--csv")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and lines[0] == "path,label,probability,error"
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [r["path"] for r in rows] == [str(mixed / "1.png"), str(mixed / ODD_NAME)]  # quoted, intact
    assert rows[1]["label"] in CLASSES and rows[1]["error"] == ""


def test_a_corrupt_image_gets_its_own_row_and_exit_3(model, mixed):
    proc = run_learnkit("predict", str(mixed), *model, "--json")
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    rows = _json_lines(proc.stdout)
    assert [Path(r["path"]).name for r in rows] == ["1.png", "2.png", "3.png", Path(ODD_NAME).name]
    assert "error" in rows[1] and "label" not in rows[1]
    assert all(r["label"] in CLASSES for r in rows[:1] + rows[2:])
    stderr = proc.stderr.splitlines()
    assert [line for line in stderr if line.startswith("warning:")] == [f"warning: {rows[1]['error']}"]
    assert stderr[-1] == "error: 1 of 4 images could not be read"


# --- through CliRunner ---
def test_topk_gives_the_two_best_labels_in_order(model, image_folder):
    result = runner.invoke(
        app, ["predict", str(_valid_images(image_folder)[0]), *model, "--topk", "2", "--json"]
    )
    assert result.exit_code == 0, result.stderr
    (row,) = _json_lines(result.stdout)
    top = row["topk"]
    assert {t["label"] for t in top} == CLASSES
    assert top[0]["label"] == row["label"] and top[0]["probability"] == row["probability"]
    assert top[0]["probability"] >= top[1]["probability"]
    assert sum(t["probability"] for t in top) == pytest.approx(1.0, abs=1e-5)


def test_topk_csv_and_table_columns(model, image_folder):
    image = str(_valid_images(image_folder)[0])
    result = runner.invoke(app, ["predict", image, *model, "--topk", "2", "--csv"])
    assert result.stdout.splitlines()[0] == "path,label,probability,label_2,probability_2,error"
    result = runner.invoke(app, ["predict", image, *model, "--topk", "2"])
    assert result.exit_code == 0, result.stderr
    header, line = result.stdout.splitlines()
    assert header.split() == ["path", "label", "probability", "topk"] and line.startswith(image)


def test_a_glob_pattern_is_expanded(model, image_folder):
    pattern = str(image_folder / "valid" / "*" / "[0-2].png")
    result = runner.invoke(app, ["predict", pattern, *model, "--json"])
    assert result.exit_code == 0, result.stderr
    expected = sorted(str(p) for p in (image_folder / "valid").glob("*/[0-2].png"))
    assert [r["path"] for r in _json_lines(result.stdout)] == expected and len(expected) == 6


def test_predictions_match_the_library(model, trained, image_folder):
    from learnkit.vision.learners import load_learner

    image = _valid_images(image_folder)[-1]
    result = runner.invoke(app, ["predict", str(image), *model, "--json"])
    (row,) = _json_lines(result.stdout)
    label, index, probs = load_learner("last", path=trained["path"], device="cpu").predict(image)
    assert (row["label"], row["index"]) == (label, index)
    assert row["probability"] == pytest.approx(float(probs[index]), abs=1e-6)


def test_model_file_is_taken_as_given(trained, image_folder):
    file = trained["path"] / "models" / "last.safetensors"
    result = runner.invoke(
        app, ["predict", str(_valid_images(image_folder)[0]), "--model", str(file), "--json"]
    )
    assert result.exit_code == 0, result.stderr


def test_a_missing_checkpoint_is_exit_4_in_one_line(trained, image_folder):
    args = ["predict", str(image_folder), "--model", "nope", "--path", str(trained["path"])]
    result = runner.invoke(app, args)
    assert result.exit_code == 4 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "nope.safetensors" in result.stderr
    assert "checkpoints in" in result.stderr  # it names the ones there are


def test_no_images_is_exit_3(model, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path), *model])
    assert result.exit_code == 3 and "no images found" in result.stderr


def test_json_and_csv_together_is_a_usage_error(model, image_folder):
    result = runner.invoke(app, ["predict", str(image_folder), *model, "--json", "--csv"])
    assert result.exit_code == 2 and "choose one" in result.stderr


# --- a segmentation checkpoint writes masks ---
@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> dict:
    """A tiny U-Net checkpoint (resnet18 cut after layer1, untrained) and two 40 x 30 images."""
    try:
        from learnkit.data import SegmentationDataBunch
        from learnkit.vision.learners import unet_learner
    except ImportError as exc:  # the U-Net is another issue's work
        pytest.skip(f"no U-Net to build a segmentation checkpoint with: {exc}")
    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "codes.txt").write_text("background\nsquare\n")
    for i in range(5):
        img, mask = Image.new("RGB", (40, 30), (20, 20, 20)), Image.new("L", (40, 30), 0)
        img.paste((230, 200, 40), (5 + i, 5, 20 + i, 20))
        mask.paste(1, (5 + i, 5, 20 + i, 20))
        img.save(root / "images" / f"{i}.png")
        mask.save(root / "masks" / f"{i}.png")
    bunch = SegmentationDataBunch.from_folder(root, size=32, bs=4, valid_pct=0.4, device="cpu")
    learn = unet_learner(bunch, "resnet18", pretrained=False, cut=5, path=root / "run")
    learn.save("seg", with_opt=False)
    return {"path": root / "run", "images": sorted((root / "images").glob("*.png"))[:2]}


def test_segmentation_writes_a_mask_per_image(seg_run):
    args = [*map(str, seg_run["images"]), "--model", "seg", "--path", str(seg_run["path"]), "--json"]
    result = runner.invoke(app, ["predict", *args, "--overlay", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    rows = _json_lines(result.stdout)
    assert len(rows) == 2
    for row, image in zip(rows, seg_run["images"]):
        mask = Path(row["mask"])
        assert mask.parent == seg_run["path"] / "predictions" and mask.name == f"{image.stem}.mask.png"
        with Image.open(mask) as png:
            assert png.format == "PNG" and png.size == (40, 30)  # the image's own size
            assert int(np.asarray(png).max()) <= 1  # class indices of background/square
        assert Image.open(row["overlay"]).size == (40, 30)
        assert set(row["pixels"]) <= {"background", "square"}


def test_segmentation_out_folder_and_csv(seg_run, tmp_path):
    args = [str(seg_run["images"][0]), "--model", "seg", "--path", str(seg_run["path"]), "--device", "cpu"]
    result = runner.invoke(app, ["predict", *args, "--out", str(tmp_path / "m"), "--csv"])
    assert result.exit_code == 0, result.stderr
    (row,) = csv.DictReader(io.StringIO(result.stdout))
    assert Path(row["mask"]) == tmp_path / "m" / "0.mask.png" and row["overlay"] == ""
    assert Path(row["mask"]).is_file()


# --- rendering, on StringIO consoles ---
def _console(width: int = 200) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=False, color_system=None), buffer


def test_render_text_rows_with_an_error_column():
    rows = [
        {"path": "a.png", "label": "cat", "index": 0, "probability": 0.9},
        {"path": "b.png", "error": "corrupt image b.png"},
    ]
    warned: list[str] = []
    console, buffer = _console()
    assert render_predictions(rows, console, "text", warn=warned.append) == (2, 1)
    assert buffer.getvalue().splitlines() == [
        "path   label  probability  error",
        "a.png  cat    0.900000     -",
        "b.png  -      -            corrupt image b.png",
    ]
    assert warned == ["corrupt image b.png"]


def test_render_csv_quotes_awkward_paths():
    rows = [{"path": 'x, "y".png', "label": "a", "probability": 0.5, "topk": [
        {"label": "a", "probability": 0.5}, {"label": "b", "probability": 0.25}]}]  # fmt: skip
    console, buffer = _console(width=20)  # narrower than a line: CSV is never wrapped
    render_predictions(rows, console, "csv", topk=2)
    assert (
        buffer.getvalue()
        == 'path,label,probability,label_2,probability_2,error\n"x, ""y"".png",a,0.5,b,0.25,\n'
    )


def test_csv_cells_for_segmentation():
    columns = csv_columns("segmentation")
    assert csv_cells({"path": "a.png", "mask": "m/a.mask.png"}, columns) == ["a.png", "m/a.mask.png", "", ""]


def test_a_terminal_table_shows_brackets_in_paths_as_they_are():
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system=None)
    render_predictions([{"path": "x/[bold]a.png", "label": "cat", "probability": 0.5}], console, "text")
    assert "x/[bold]a.png" in console.file.getvalue()
