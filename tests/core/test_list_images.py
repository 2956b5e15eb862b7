"""``list_images``: strings, in ``sorted(Path)`` order, the rules of ``rglob`` (hidden skipped,
symlinked folders not followed, extension filter, case-insensitive)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from learnkit.data.folder import list_images


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _rglob_rule(folder: Path) -> list[Path]:
    """What the listing promises, written with pathlib (the former implementation)."""
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in exts
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def test_rules_and_order_match_rglob(tmp_path):
    root = tmp_path / "data"
    for rel in [
        "b/2.jpg", "b/10.JPG", "a/x.png", "a/sub/deep.jpeg", "a-b/1.webp", "a.b/1.gif", "a b/1.tif",
        "ab/1.bmp", "top.tiff", "a/notes.txt", "a/noext", "a/.hidden.jpg", ".cache/1.jpg", "a/.h/1.jpg",
        "Z/upper.png", "a/sub/x.PNG",
    ]:  # fmt: skip
        _touch(root / rel)
    (root / "dir.jpg").mkdir()  # a folder with an image name is not a file
    outside = tmp_path / "outside"
    _touch(outside / "linked.jpg")
    os.symlink(outside, root / "link")  # symlinked folder: not followed
    os.symlink(outside / "linked.jpg", root / "a" / "filelink.jpg")  # symlinked file: listed
    os.symlink(tmp_path / "gone.jpg", root / "a" / "broken.jpg")  # dangling: left out

    got = list_images(root)
    assert all(isinstance(p, str) for p in got)
    assert [Path(p) for p in got] == _rglob_rule(root)
    rel = [str(Path(p).relative_to(root)) for p in got]
    assert "a/filelink.jpg" in rel and "link/linked.jpg" not in rel and "a/broken.jpg" not in rel
    assert not any("hidden" in r or ".cache" in r or "/.h/" in r for r in rel)
    # part-by-part order: "a/..." before "a b/", "a-b/", "a.b/" (a plain string sort would not)
    assert rel.index("a/x.png") < rel.index("a b/1.tif") < rel.index("a-b/1.webp") < rel.index("a.b/1.gif")
    assert len(rel) == 12


@pytest.mark.parametrize("spelling", ["{root}", "{root}/", "{root}//", "{root}/./"])
def test_folder_spelling_does_not_change_the_paths(tmp_path, spelling):
    _touch(tmp_path / "c" / "1.jpg")
    got = list_images(spelling.format(root=tmp_path))
    assert got == [str(tmp_path / "c" / "1.jpg")]


def test_missing_or_unreadable_folder_lists_nothing(tmp_path):
    assert list_images(tmp_path / "absent") == []
