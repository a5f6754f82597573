"""data_scripts/download_tiny_imagenet.py: zip -> verified -> extracted -> val reorganised -> loadable."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import zipfile
from pathlib import Path

import pytest
import torch

from beniful import datasets

_spec = importlib.util.spec_from_file_location("_beniful_test_formats", Path(__file__).parent / "formats.py")
formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(formats)
script = formats.load_script("download_tiny_imagenet")
WNIDS = formats.TINY_WNIDS


@pytest.fixture
def archive(tmp_path):
    base = formats.write_tiny_imagenet(tmp_path / "src", n_train=2, n_val=2)
    path = formats.zip_folder(base, tmp_path / "tiny-imagenet-200.zip")
    return path, hashlib.md5(path.read_bytes()).hexdigest()


def _val_layout(base: Path) -> dict[str, list[str]]:
    val = base / "val"
    return {d.name: sorted(f.name for f in d.iterdir()) for d in sorted(val.iterdir()) if d.is_dir()}


def test_constants():
    assert script.MD5 == "90528d7ca1a48142e341f4ef8d21d0de"
    assert script.URL.endswith("/tiny-imagenet-200.zip")
    assert script.FOLDER == datasets.TINY_FOLDER


def test_download_extract_reorganise_and_load(archive, tmp_path):
    path, md5 = archive
    root = tmp_path / "data"
    base = script.prepare(root, url=path.as_uri(), md5=md5, quiet=True)
    assert base == root / "tiny-imagenet-200"
    # val/<wnid>/*.JPEG following val_annotations.txt (val_k has class reversed(WNIDS)[k % 3])
    layout = _val_layout(base)
    assert set(layout) == set(WNIDS)
    assert layout[WNIDS[2]] == ["val_0.JPEG", "val_3.JPEG"]
    assert layout[WNIDS[0]] == ["val_2.JPEG", "val_5.JPEG"]
    assert not (base / "val" / "images").exists()
    assert (base / "val" / "val_annotations.txt").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]
    train, test = datasets.load("tiny-imagenet", root=root)
    assert train.data.shape == (6, 3, 64, 64) and test.data.shape == (6, 3, 64, 64)
    assert test.targets.bincount().tolist() == [2, 2, 2]
    for x, y in zip(test.data, test.targets):  # the moved image carries its annotated class's colour
        assert int(x.float().mean(dim=(1, 2)).argmax()) == int(torch.tensor(formats.TINY_COLOURS[WNIDS[y]]).argmax())
    # a second run changes nothing and downloads nothing
    path.unlink()
    assert script.prepare(root, url=path.as_uri(), md5=md5, quiet=True) == base
    assert _val_layout(base) == layout


def test_wrong_checksum_is_refused(archive, tmp_path, capsys):
    path, _ = archive
    root = tmp_path / "data"
    rc = script.main(["--root", str(root), "--url", path.as_uri(), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and script.MD5 in err
    assert not root.exists() or list(root.iterdir()) == []


def test_cli_local_archive(archive, tmp_path, monkeypatch):
    path, md5 = archive
    monkeypatch.setattr(script, "MD5", md5)
    root = tmp_path / "data"
    assert script.main(["--root", str(root), "--archive", str(path), "--quiet"]) == 0
    train, _ = datasets.load("tiny-imagenet", root=root)
    assert train.classes == WNIDS


def test_reorganise_an_already_extracted_folder_and_resume(tmp_path):
    base = formats.write_tiny_imagenet(tmp_path, n_train=1, n_val=3)
    val = base / "val"
    # simulate a reorganisation interrupted after two files
    for k, w in [(0, WNIDS[2]), (1, WNIDS[1])]:
        (val / w).mkdir()
        os.replace(val / "images" / f"val_{k}.JPEG", val / w / f"val_{k}.JPEG")
    assert script.val_is_flat(base)
    assert script.prepare(tmp_path, url="file:///nonexistent", quiet=True) == base  # no download needed
    assert not script.val_is_flat(base)
    assert sum(len(v) for v in _val_layout(base).values()) == 9
    assert script.reorganize_val(base) == 0  # idempotent
    train, test = datasets.load("tiny-imagenet", root=tmp_path)
    assert len(test) == 9


@pytest.mark.parametrize("line,match", [
    ("../../evil.JPEG\tn02124075\t0\t0\t1\t1", "not a plain file name"),
    ("val_0.JPEG\tn99999999\t0\t0\t1\t1", "not in wnids.txt"),
    ("val_0.JPEG", "expected"),
    ("val_77.JPEG\tn02124075\t0\t0\t1\t1", "neither"),
])
def test_bad_annotation_lines_are_refused(tmp_path, line, match):
    base = formats.write_tiny_imagenet(tmp_path, n_train=1, n_val=1)
    (base / "val" / "val_annotations.txt").write_text(line + "\n")
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        script.reorganize_val(base)
    assert not (tmp_path / "evil.JPEG").exists()


def test_unlisted_val_images_are_reported(tmp_path):
    base = formats.write_tiny_imagenet(tmp_path, n_train=1, n_val=1)
    (base / "val" / "images" / "stray.JPEG").write_bytes(b"x")
    with pytest.raises(ValueError, match="not listed"):
        script.reorganize_val(base)


def test_truncated_zip_is_refused_and_leaves_nothing(archive, tmp_path):
    path, _ = archive
    raw = path.read_bytes()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(raw[: len(raw) // 2])
    md5 = hashlib.md5(bad.read_bytes()).hexdigest()  # matches: the test is about the archive itself
    root = tmp_path / "data"
    with pytest.raises(script._fetch.CorruptArchiveError):
        script.prepare(root, archive=bad, md5=md5, quiet=True)
    assert list(root.iterdir()) == []


def test_zip_traversal_member_is_refused(tmp_path):
    base = formats.write_tiny_imagenet(tmp_path / "src", n_train=1, n_val=1)
    path = formats.zip_folder(base, tmp_path / "t.zip")
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("tiny-imagenet-200/../../../escaped.txt", b"bad")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    root = tmp_path / "a" / "b" / "data"
    with pytest.raises(script._fetch.UnsafeArchiveError):
        script.prepare(root, archive=path, md5=md5, quiet=True)
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not (root / "tiny-imagenet-200").exists()
