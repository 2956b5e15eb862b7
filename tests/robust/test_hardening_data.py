"""Issue 28, points 1-4 and 7: nothing outside DATA read, nothing written through a planted link, one
class-name rule, budgets before allocation, changed data named.

Before: ``labels.csv`` rows ``../x.png`` and ``/abs/x.png`` trained on (exit 0); ``report`` and
``export`` wrote through a symlink planted at their temporary names; a run folder inside DATA
became a class; duplicate codes trained to a checkpoint ``predict`` refused; a YAML alias bomb took
gigabytes; validate called a shifted ``--valid-pct`` split "the fit's own"; a one-class labels.csv
trained.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from learnkit.class_names import MAX_CLASS_NAME, class_names_problem
from learnkit.data import ImageDataBunch
from learnkit.data.csv_labels import MAX_CSV_ROWS, read_labels_csv
from learnkit.data.fingerprint import check_unchanged, data_fingerprint
from learnkit.data.segmentation import read_codes
from learnkit.errors import CheckpointError, DataError, UsageError
from learnkit.jobs.run_folder import check_outside_data
from learnkit.safe_yaml import MAX_CONFIG_BYTES, load_yaml, read_yaml_file

FIGURES: dict[str, int] = {}


def _count(category: str) -> None:
    FIGURES[category] = FIGURES.get(category, 0) + 1


def _png(path: Path, colour: tuple[int, int, int] = (200, 40, 40), size: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(path)
    return path


def _csv_folder(root: Path, rows: list[str]) -> Path:
    for k in range(4):
        _png(root / f"{k}.png")
    (root / "labels.csv").write_text("name,label\n" + "".join(f"{r}\n" for r in rows))
    return root / "labels.csv"


# --- 1. paths read from data stay inside DATA ---
@pytest.mark.parametrize("escape", ["../outside.png", "ABS", "link.png", "sub/../../outside.png"])
def test_labels_csv_rows_outside_data_are_refused_naming_the_row(tmp_path, escape):
    outside = _png(tmp_path / "outside.png")
    data = tmp_path / "data"
    data.mkdir()
    if escape == "link.png":
        (data / "link.png").symlink_to(outside)
    name = str(outside) if escape == "ABS" else escape
    csv = _csv_folder(data, ["0.png,a", "1.png,b", f"{name},a"])
    with pytest.raises(DataError, match=r"labels\.csv:4: .* is outside"):
        read_labels_csv(csv)
    _count("paths outside DATA")


def test_labels_csv_rows_inside_data_still_read(tmp_path):
    data = tmp_path / "data"
    _png(data / "sub" / "x.png")
    (data / "in.png").symlink_to(data / "sub" / "x.png")  # a link that stays inside is fine
    csv = _csv_folder(data, ["0.png,a", "sub/x.png,b", "./in.png,a"])
    assert [p.name for p in read_labels_csv(csv).files] == ["0.png", "x.png", "in.png"]


def test_labels_csv_budgets_are_checked_before_rows_are_kept(tmp_path, monkeypatch):
    import learnkit.data.csv_labels as csv_labels

    monkeypatch.setattr(csv_labels, "MAX_CSV_ROWS", 5)
    csv = _csv_folder(tmp_path, [f"{k % 4}.png,a" for k in range(6)])
    with pytest.raises(DataError, match="more than the 5 rows"):
        read_labels_csv(csv)
    monkeypatch.setattr(csv_labels, "MAX_CSV_BYTES", 10)
    with pytest.raises(DataError, match="bytes, more than"):
        read_labels_csv(csv)
    assert MAX_CSV_ROWS >= 1_000_000
    _count("budgets")


def test_one_class_labels_csv_is_refused_like_a_one_class_folder(tmp_path):
    _csv_folder(tmp_path, [f"{k}.png,cat" for k in range(4)])
    with pytest.raises(DataError, match="only one class, 'cat'"):
        ImageDataBunch.from_csv(tmp_path, valid_pct=0.5, size=8, bs=2, device="cpu")
    _count("one-class labels.csv")


@pytest.mark.parametrize("name", ["report.html", "best.onnx"])
def test_files_written_in_place_never_follow_a_planted_link(tmp_path, name):
    from learnkit.report import _write_text

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    run = tmp_path / "run"
    run.mkdir()
    (run / f".{name}.tmp").symlink_to(victim)  # the old fixed temporary name
    if name == "report.html":
        _write_text(run / name, "<html>")
    else:
        from learnkit.export import _write_pt2

        target = run / "best.pt2"
        (run / ".best.tmp.pt2").symlink_to(victim)
        _write_pt2(torch.nn.Linear(3, 2).eval(), torch.zeros(2, 3), target, {"k": "v"})
        assert target.stat().st_size > 0
    assert victim.read_text() == "keep"
    _count("planted links")


def test_history_csv_is_appended_without_following_a_link(tmp_path):
    from learnkit.atomic import open_no_follow

    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "history.csv").symlink_to(victim)
    with pytest.raises(OSError):
        open_no_follow(tmp_path / "history.csv", "ab")
    assert victim.read_text() == "keep"
    _count("planted links")


def test_a_run_folder_inside_data_is_never_a_class_and_path_inside_data_is_refused(tmp_path):
    for cls, colour in (("reds", (200, 0, 0)), ("blues", (0, 0, 200))):
        for k in range(3):
            _png(tmp_path / cls / f"{k}.png", colour)
    run = tmp_path / "run"
    _png(run / "plots" / "losses.png")
    (run / ".learnkit.lock").write_text("1\n")
    data = ImageDataBunch.from_folder(tmp_path, valid_pct=0.34, size=8, bs=2, device="cpu")
    assert data.classes == ["blues", "reds"]
    with pytest.raises(UsageError, match="inside the data folder"):
        check_outside_data(run, tmp_path)
    with pytest.raises(UsageError, match="inside the data folder"):
        check_outside_data(tmp_path, tmp_path)
    check_outside_data(tmp_path.parent / "elsewhere", tmp_path)
    _count("paths outside DATA")


# --- 2. one class-name rule, at the data and at the checkpoint ---
def test_duplicate_codes_are_refused_at_the_data_naming_them(tmp_path):
    (tmp_path / "codes.txt").write_text("bg\nthing\nthing\n")
    with pytest.raises(DataError, match="names repeat: 'thing'"):
        read_codes(tmp_path / "codes.txt")
    _count("class names")


def test_codes_beyond_the_class_budget_are_refused_before_use(tmp_path):
    (tmp_path / "codes.txt").write_text("".join(f"c{k}\n" for k in range(100_001)))
    with pytest.raises(DataError, match="more than the 100000 allowed"):
        read_codes(tmp_path / "codes.txt")
    _count("budgets")


# the v1 list constructors read class names from labels: the same rule as from_folder
def _six_images(root: Path) -> list[str]:
    return [_png(root / f"{k}.png", (40 * k, 90, 200 - 30 * k), size=16).name for k in range(6)]


def _v1(kind: str, root: Path, labels: list, **kwargs):
    files = _six_images(root)
    kw = {"size": 16, "bs": 2, "device": "cpu", "valid_pct": 0.34, **kwargs}
    if kind == "from_lists":
        return ImageDataBunch.from_lists(root, files, labels, **kw)
    if kind == "from_name_func":
        by_name = dict(zip(files, labels, strict=True))
        return ImageDataBunch.from_name_func(root, files, lambda f: by_name[str(f)], **kw)
    if kind == "from_name_re":  # the label is the file name's stem, looked up
        renamed = [f"{k}_{label}.png" for k, label in enumerate(labels)]
        for old, new in zip(files, renamed, strict=True):
            (root / old).rename(root / new)
        return ImageDataBunch.from_name_re(root, renamed, r"^\d+_(.*)\.png$", **kw)
    pd = pytest.importorskip("pandas")
    return ImageDataBunch.from_df(root, pd.DataFrame({"name": files, "label": labels}), **kw)


V1 = ["from_lists", "from_name_func", "from_name_re", "from_df"]


@pytest.mark.parametrize("kind", V1)
def test_v1_constructors_refuse_a_single_class_like_from_folder(tmp_path, kind):
    with pytest.raises(DataError, match="only one class, 'cat',") as err:
        _v1(kind, tmp_path, ["cat"] * 6)
    assert err.value.exit_code == 3
    _count("class names")


@pytest.mark.parametrize("kind", ["from_lists", "from_name_func", "from_df"])
def test_v1_constructors_refuse_labels_that_read_as_the_same_class(tmp_path, kind):
    # 1 and "1" would both become the class "1": two classes merged without a word
    with pytest.raises(DataError, match=r"the labels 1 and '1' both read as the class '1'") as err:
        _v1(kind, tmp_path, [1, "1", 2, 2, 1, "1"])
    assert err.value.exit_code == 3
    _count("class names")


@pytest.mark.parametrize("kind", ["from_lists", "from_name_func", "from_df"])
def test_v1_constructors_refuse_empty_and_missing_labels(tmp_path, kind):
    with pytest.raises(DataError, match="a class name is empty"):
        _v1(kind, tmp_path / "empty", ["a", "", "b", "a", "b", "a"])
    with pytest.raises(DataError, match=r"no label for .*3\.png \(nan\)"):
        _v1(kind, tmp_path / "nan", ["a", "b", "a", float("nan"), "b", "a"])
    _count("class names")


def test_v1_constructors_refuse_repeated_classes_given(tmp_path):
    with pytest.raises(DataError, match="names repeat: 'a'"):
        _v1("from_lists", tmp_path / "l", ["a", "b"] * 3, classes=["a", "b", "a"])
    _png(tmp_path / "f" / "a" / "0.png")
    _png(tmp_path / "f" / "b" / "0.png")
    with pytest.raises(DataError, match="names repeat: 'b'"):
        ImageDataBunch.from_folder(tmp_path / "f", valid_pct=0.5, classes=["a", "b", "b"], device="cpu")
    _count("class names")


@pytest.mark.parametrize("kind", V1)
def test_v1_constructors_accept_long_and_odd_names_that_round_trip_a_checkpoint(tmp_path, kind):
    from learnkit.vision.learners import cnn_learner, load_learner

    odd = ["é" * 2000, "a $x$ / b", 'q"uote, 50%']  # "/" is no folder name, but is a label
    if kind == "from_name_re":  # these labels come from file names
        odd = ["é" * 100, "a $x$ b", 'q"uote, 50%']
    labels = [odd[k % 3] for k in range(6)]
    data = _v1(kind, tmp_path / "data", labels, seed=1)
    assert data.classes == sorted(odd)
    learn = cnn_learner(data, "simple_cnn", path=tmp_path / "run")
    learn.fit(1, 1e-3)
    learn.save("last")
    back = load_learner("last", path=tmp_path / "run", device="cpu")
    label, _, probs = back.predict(sorted((tmp_path / "data").glob("*.png"))[0])
    assert back.data.classes == sorted(odd) and str(label) in odd and len(probs) == 3
    _count("class names")


@pytest.mark.parametrize(
    "names", [["a" * 2000, "b"], ["$x$", "50% off", "é", " lead", 'q"uote'], ["a" * MAX_CLASS_NAME, "b"]]
)
def test_names_the_data_accepts_the_checkpoint_reader_accepts(names):
    from learnkit.checkpoint_schema import _check_classes

    assert class_names_problem(names) is None
    _check_classes(names, None, "f")  # no CheckpointError
    _count("class names")


@pytest.mark.parametrize("names", [["a", "a"], ["a" * (MAX_CLASS_NAME + 1)], ["", "b"], [1, 2]])
def test_names_the_data_refuses_the_checkpoint_reader_refuses(names):
    from learnkit.checkpoint_schema import _check_classes

    assert class_names_problem(names) is not None
    with pytest.raises(CheckpointError):
        _check_classes(names, None, "f")
    _count("class names")


_folder_name = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"), min_size=1, max_size=30
).filter(lambda s: not s.startswith(".") and s.strip() == s and len(s.encode()) < 200)


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_folder_name, min_size=2, max_size=3, unique=True))
def test_every_accepted_data_set_round_trips_fit_to_predict(tmp_path_factory, names):
    from learnkit.vision.learners import cnn_learner, load_learner

    root = tmp_path_factory.mktemp("rt")
    for i, name in enumerate(names):
        for split in ("train", "valid"):
            _png(root / "data" / split / name / "0.png", (60 * i, 200 - 60 * i, 90), size=16)
    data = ImageDataBunch.from_folder(root / "data", size=16, bs=2, device="cpu", augment=False)
    learn = cnn_learner(data, "simple_cnn", path=root / "run")
    learn.fit(1, 1e-3)
    learn.save("last")
    back = load_learner("last", path=root / "run", device="cpu")
    label, _, probs = back.predict(root / "data" / "valid" / names[0] / "0.png")
    assert back.data.classes == sorted(names) and str(label) in names and len(probs) == len(names)
    _count("class names")


# --- 3. config budgets: a YAML bomb refused fast ---
def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, levels)]
    return "\n".join(lines) + "\ndata:\n  bs: *a8\n"


@pytest.mark.parametrize(
    "text, why",
    [
        (_bomb(), "aliases expand"),
        ("a: &x [1, *x]\n", "recursive alias"),
        ("[" * 200 + "]" * 200, "nested more than"),
    ],
)
def test_yaml_bombs_are_refused_before_any_value_is_built(text, why):
    start = time.perf_counter()
    with pytest.raises(UsageError, match=why):
        load_yaml(text, "bomb.yaml")
    assert time.perf_counter() - start < 2.0
    _count("budgets")


def test_config_bytes_are_bounded_even_for_an_endless_file(tmp_path):
    with pytest.raises(UsageError, match=f"larger than the {MAX_CONFIG_BYTES} bytes"):
        read_yaml_file("/dev/zero")
    (tmp_path / "ok.yaml").write_text("a: &x [1, 2]\nb: *x\n")
    assert read_yaml_file(tmp_path / "ok.yaml") == {"a": [1, 2], "b": [1, 2]}
    _count("budgets")


def test_images_are_measured_against_a_memory_budget_before_decoding(tmp_path, monkeypatch):
    import learnkit.data.images as images

    Image.new("RGBA", (100, 100)).save(tmp_path / "a.png")
    Image.new("L", (100, 100)).save(tmp_path / "l.png")
    monkeypatch.setattr(images, "MAX_DECODED_BYTES", 60_000)  # RGBA + RGB copy: 70,000 bytes
    with pytest.raises(DataError, match="too large to decode .* RGBA"):
        images.check_image(tmp_path / "a.png", 16)
    images.check_image(tmp_path / "l.png", 16)  # L + RGB copy: 40,000 bytes
    _count("budgets")


# --- 4. the data a fit saw, and what changed ---
def _pct_bunch(root: Path) -> ImageDataBunch:
    return ImageDataBunch.from_folder(root, valid_pct=0.25, seed=3, size=8, bs=2, device="cpu", augment=False)


@pytest.fixture
def pct_folder(tmp_path):
    for cls, colour in (("reds", (200, 0, 0)), ("blues", (0, 0, 200))):
        for k in range(6):
            _png(tmp_path / "d" / cls / f"{k}.png", colour)
    return tmp_path / "d"


def test_unchanged_data_has_the_same_fingerprint(pct_folder):
    saved = data_fingerprint(_pct_bunch(pct_folder))
    assert saved["train"]["n"] + saved["valid"]["n"] == 12
    assert saved["all"]["counts"] == {"blues": 6, "reds": 6}
    assert check_unchanged(saved, _pct_bunch(pct_folder), allow=False, what="m") == []


@pytest.mark.parametrize("change", ["add", "remove", "edit", "touch"])
def test_a_changed_folder_is_named_exit_3_or_a_warning_when_allowed(pct_folder, change):
    saved = data_fingerprint(_pct_bunch(pct_folder))
    target = pct_folder / "reds" / "2.png"
    if change == "add":
        _png(pct_folder / "reds" / "extra.png")
    elif change == "remove":
        target.unlink()
    elif change == "edit":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 9, 3), np.uint8)).save(target)
    else:
        os.utime(target, ns=(1, 1))
    expected = {"add": "1 added (reds/extra.png)", "remove": "1 removed (reds/2.png)"}.get(
        change, "1 changed (reds/2.png)"
    )
    with pytest.raises(DataError, match=r"changed since m was trained: the data: .*" + re.escape(expected)):
        check_unchanged(saved, _pct_bunch(pct_folder), allow=False, what="m")
    assert check_unchanged(saved, _pct_bunch(pct_folder), allow=True, what="m")
    _count("changed data")


def test_an_edited_is_valid_column_is_named_per_split(tmp_path):
    csv = _csv_folder(tmp_path, [])
    rows = ["0.png,a,0", "1.png,b,0", "2.png,a,1", "3.png,b,1"]
    csv.write_text("name,label,is_valid\n" + "\n".join(rows) + "\n")
    saved = data_fingerprint(ImageDataBunch.from_csv(tmp_path, size=8, bs=2, device="cpu"))
    csv.write_text("name,label,is_valid\n" + "\n".join([rows[0], "1.png,b,1", "2.png,a,1", rows[3]]) + "\n")
    with pytest.raises(DataError, match=r"the train set: 2 images at the fit, 1 now; 1 removed \(1\.png\)"):
        check_unchanged(
            saved, ImageDataBunch.from_csv(tmp_path, size=8, bs=2, device="cpu"), allow=False, what="m"
        )
    _count("changed data")


def test_validate_names_added_images_and_never_calls_it_the_fits_split(pct_folder, tmp_path):
    from learnkit.jobs.evaluate import validate
    from learnkit.vision.learners import cnn_learner

    learn = cnn_learner(_pct_bunch(pct_folder), "simple_cnn", path=tmp_path / "run")
    learn.save("last")
    same = validate(pct_folder, "last", path=tmp_path / "run", device="cpu")
    assert "the fit's own split" in same["split"] and "not" not in same["split"]
    _png(pct_folder / "blues" / "new.png")
    with pytest.raises(DataError, match=r"1 added \(blues/new\.png\)"):
        validate(pct_folder, "last", path=tmp_path / "run", device="cpu")
    with pytest.warns(UserWarning, match="blues/new.png"):
        allowed = validate(pct_folder, "last", path=tmp_path / "run", device="cpu", allow_changed_data=True)
    assert "not the fit's own split" in allowed["split"]
    _count("changed data")


def test_figures():
    print(f"\nhardening figures: {dict(sorted(FIGURES.items()))}")
