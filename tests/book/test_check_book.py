"""The CI browser check (.ci/check_book.py) finds broken images, links, anchors and tracebacks.

Runs its HTML checks on small planted trees; the Chromium screenshots are exercised by .ci/run.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_book", ROOT / ".ci" / "check_book.py")
check_book = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_book)


def _png(path: Path, size: int = 16) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (200, 30, 30)).save(path)


def _tree(root: Path, page_body: str) -> None:
    (root / "book").mkdir(parents=True)
    (root / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    (root / "book" / "intro.html").write_text(
        '<html><body><h1 id="top">x</h1><a href="../notebooks/table1.html#fig">t1</a>'
        '<a href="https://example.org/">ext</a><a href="#top">up</a>'
        '<link rel="stylesheet" href="../_static/style.css"></body></html>')
    (root / "_static").mkdir()
    (root / "_static" / "style.css").write_text("body{}")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "table1.html").write_text(f'<html><body><div id="fig"></div>{page_body}</body></html>')
    _png(root / "_images" / "a.png")


def test_a_good_tree_passes(tmp_path: Path) -> None:
    _tree(tmp_path, '<img src="../_images/a.png"><img src="data:image/png;base64,AAAA">')
    problems, parsed = check_book.check_tree(tmp_path)
    assert problems == []
    assert check_book.landing_page(tmp_path, parsed) == (tmp_path / "book" / "intro.html").resolve()
    assert check_book.main([str(tmp_path)]) == 0


@pytest.mark.parametrize("body, needle", [
    ('<img src="../_images/missing.png">', "does not resolve"),
    ('<a href="../book/nope.html">x</a>', "does not resolve"),
    ('<a href="../book/intro.html#nowhere">x</a>', "no element with id 'nowhere'"),
    ('<pre>Traceback (most recent call last):\n  ValueError</pre>', "traceback"),
    ('<img src="../_images/empty.png">', "empty file"),
    ('<img src="../_images/broken.png">', "unreadable image"),
])
def test_each_kind_of_breakage_is_reported(tmp_path: Path, body: str, needle: str) -> None:
    _tree(tmp_path, body)
    (tmp_path / "_images" / "empty.png").write_bytes(b"")
    (tmp_path / "_images" / "broken.png").write_bytes(b"not a png at all")
    problems, _ = check_book.check_tree(tmp_path)
    assert any(needle in p for p in problems), problems
    assert check_book.main([str(tmp_path)]) == 1


def test_missing_build_fails(tmp_path: Path) -> None:
    assert check_book.main([str(tmp_path / "nothing")]) == 1
