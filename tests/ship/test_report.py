"""``learnkit report``: one self-contained HTML page, checked in a real headless browser."""

import json
import re
import shutil
import subprocess

import pytest
import torch

from learnkit import ImageDataBunch, accuracy
from learnkit.report import per_class_scores, write_report
from learnkit.vision import cnn_learner
from tests.cli.conftest import run_learnkit
from tests.core.tiny_images import CLASSES, make_class_folder


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """simple_cnn fitted 2 epochs (history.csv, last + its optimizer file), with its data folder."""
    from learnkit.callbacks.csv_logger import CSVLogger

    root = make_class_folder(tmp_path_factory.mktemp("cls"))
    data = ImageDataBunch.from_folder(root, size=16, bs=4, augment=False, device="cpu")
    learn = cnn_learner(data, "simple_cnn", metrics=[accuracy], path=root / "run")
    torch.manual_seed(0)
    learn.fit_one_cycle(2, 1e-2, callbacks=[CSVLogger(learn)])
    learn.save("last")
    (root / "run" / "config.yaml").write_text(f"data: {root}\narch: simple_cnn\nsize: 16\n")
    return root


def test_per_class_scores_by_hand():
    rows = per_class_scores([[3, 1], [0, 2]], ["a", "b"])
    assert rows[0] == {
        "class": "a",
        "precision": 1.0,
        "recall": 0.75,
        "f1": pytest.approx(6 / 7),
        "support": 4,
    }
    assert rows[1]["precision"] == pytest.approx(2 / 3) and rows[1]["recall"] == 1.0


def test_report_holds_every_part_inline(run):
    report = write_report(run / "run")
    page = report.file.read_text()
    assert report.file == run / "run" / "report.html" and report.data == str(run)
    assert set(report.plots) == {
        "Losses",
        "Learning rate and momentum",
        "Metrics",
        "Confusion matrix",
        "Top losses",
    }
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:)', page), "the page links to something outside itself"
    for text in ("accuracy", "valid_loss", "precision", "recall", "f1", "Model summary", "data: "):
        assert text in page, text
    assert all(name in page for name in CLASSES)
    assert len(report.per_class) == len(CLASSES)


def test_report_without_data_says_what_it_left_out(run, tmp_path):
    folder = tmp_path / "r"
    shutil.copytree(run / "run", folder)
    (folder / "config.yaml").unlink()
    report = write_report(folder)
    assert "Confusion matrix" not in report.plots and "Losses" in report.plots
    assert any("no validation data" in n for n in report.notes)


@pytest.mark.slow
def test_report_cli(run, tmp_path):
    proc = run_learnkit("report", str(run / "run"), "--out", str(tmp_path / "r.html"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"] == 5 and (tmp_path / "r.html").is_file()
    missing = run_learnkit("report", str(tmp_path / "nowhere"))
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1


_CHECK = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.target.src || e)), true);
const _log = console.error; console.error = (...a) => { window.__errors.push(a.join(" ")); _log(...a); };
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt);
  const out = document.createElement("pre"); out.id = "__check";
  out.textContent = JSON.stringify({images: imgs.length, broken: bad, errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.slow
def test_report_renders_in_headless_chromium(run, tmp_path):
    """Chromium loads the page: no console errors, every image decoded (naturalWidth > 0)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (.ci/run installs Debian's package)")
    page = write_report(run / "run").file.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + _CHECK, 1))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    proc = subprocess.run(
        [chromium, *flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    found = re.search(r'<pre id="__check">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
    assert check == {"images": 5, "broken": [], "errors": []}
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console
    shot = tmp_path / "report.png"
    page_uri = (run / "run" / "report.html").as_uri()
    subprocess.run(
        [chromium, *flags[:4], "--window-size=1200,2400", f"--screenshot={shot}", page_uri],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 20_000  # a page with pictures, not a blank one


def test_report_facts_best_in_words_small_values_scientific_metrics_only(run, tmp_path, monkeypatch):
    from learnkit.report_html import _cell, best_text

    assert best_text({"epoch": 3, "monitor": "valid_loss", "value": 0.08421}) == "epoch 3, valid_loss 0.0842"
    assert _cell("3.016e-05") == "3.016e-05" and _cell(0.5) == "0.5000" and _cell("7") == "7"
    folder = tmp_path / "r"
    shutil.copytree(run / "run", folder)
    history = (folder / "history.csv").read_text().splitlines()
    assert "lr" in history[0].split(",")  # the Recorder's columns: lr and mom are no metrics
    monkeypatch.chdir(folder)
    report = write_report(".")
    page = report.file.read_text()
    assert "<h1>learnkit run report: r</h1>" in page  # the folder's own name, not "."
    assert "0.0000" not in page.split("<h2>Epochs</h2>")[1].split("</table>")[0]  # lr of ~1e-5 reads 1.0e-05


def test_short_counts_for_confusion_matrix_cells():
    from learnkit.interpret import short_count

    assert [short_count(v) for v in (0, 950, 12_345, 123_456, 4_500_000)] == [
        "0",
        "950",
        "12.3k",
        "123k",
        "4.5M",
    ]
