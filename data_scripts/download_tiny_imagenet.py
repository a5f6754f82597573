#!/usr/bin/env python
"""Download Tiny ImageNet into ``<root>/tiny-imagenet-200`` for ``beniful.datasets.load("tiny-imagenet")``.

    python data_scripts/download_tiny_imagenet.py [--root DIR]     # DIR defaults to $BENIFUL_DATA or ./data

Fetches ``tiny-imagenet-200.zip`` (CS231n, Stanford; 248,100,043 bytes), resuming a broken
download, checks its MD5, extracts it safely, and reorganises the validation set from the
published flat layout (``val/images/*.JPEG`` + ``val/val_annotations.txt``) into one folder per
class (``val/<wnid>/*.JPEG``), the layout the loader reads. The MD5 is not published by the
course page; ``90528d7ca1a48142e341f4ef8d21d0de`` is the value that independent dataset loaders
(torchvision-style ``TinyImageNet`` classes) agree on.

Run on an already extracted ``tiny-imagenet-200`` folder it only (re)does the reorganisation;
an interrupted reorganisation continues where it stopped.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _fetch  # noqa: E402

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
FILENAME = "tiny-imagenet-200.zip"
MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
FOLDER = "tiny-imagenet-200"


def read_wnids(base: Path) -> list[str]:
    path = base / "wnids.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {base} is not a Tiny ImageNet folder")
    return [w.strip() for w in path.read_text().split() if w.strip()]


def val_is_flat(base: Path) -> bool:
    """True while ``val/images`` still holds any image (not or only partly reorganised)."""
    images = base / "val" / "images"
    return images.is_dir() and any(images.iterdir())


def reorganize_val(base: str | Path) -> int:
    """Move ``val/images/<f>`` to ``val/<wnid>/<f>`` following ``val_annotations.txt``; returns files moved.

    Idempotent and resumable: files already moved are skipped, so an interrupted run can simply
    be repeated. Every name and wnid is checked, so a crafted annotation file cannot move files
    outside ``val/``.
    """
    base = Path(base)
    val = base / "val"
    images = val / "images"
    ann = val / "val_annotations.txt"
    if not ann.is_file():
        raise FileNotFoundError(f"{ann} is missing; cannot reorganise {val}")
    wnids = set(read_wnids(base))
    moved = 0
    for lineno, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{ann}:{lineno}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        fname, wnid = fields[0].strip(), fields[1].strip()
        if fname != os.path.basename(fname) or fname in ("", ".", "..") or "/" in fname or "\\" in fname:
            raise ValueError(f"{ann}:{lineno}: {fname!r} is not a plain file name")
        if wnid not in wnids:
            raise ValueError(f"{ann}:{lineno}: class {wnid!r} is not in wnids.txt")
        src, dst = images / fname, val / wnid / fname
        if src.is_file():
            dst.parent.mkdir(exist_ok=True)
            os.replace(src, dst)
            moved += 1
        elif not dst.is_file():
            raise FileNotFoundError(f"{ann}:{lineno}: {src} is listed but neither it nor {dst} exists")
    if images.is_dir():
        left = sorted(p.name for p in images.iterdir())
        if left:
            raise ValueError(f"{images} still holds {len(left)} files not listed in {ann}, e.g. {left[:3]}")
        images.rmdir()
    return moved


def prepare(root: str | Path | None = None, *, url: str | None = None, md5: str | None = None,
            archive: str | Path | None = None, urlopen=None, remove_archive: bool = False, quiet: bool = False) -> Path:
    """Make ``root/tiny-imagenet-200`` complete with a per-class ``val/``; returns that folder."""
    root = Path(root) if root is not None else _fetch.default_root()
    url, md5 = url or URL, md5 or MD5
    final = root / FOLDER
    if final.is_dir():
        read_wnids(final)
        if val_is_flat(final):
            n = reorganize_val(final)
            _fetch._log(f"reorganised {n} validation images in {final / 'val'}", quiet)
        else:
            _fetch._log(f"Tiny ImageNet already present in {final}", quiet)
        return final
    return _fetch.install_archive(root, FOLDER, FILENAME, url, md5, archive=archive, remove_archive=remove_archive,
                                  urlopen=urlopen, quiet=quiet, name="Tiny ImageNet", prepare=reorganize_val,
                                  note=" (about 120,000 files)")


def main(argv: list[str] | None = None) -> int:
    return _fetch.main(argv, __doc__, FOLDER, prepare, archive_name=FILENAME, source_help="the CS231n one")


if __name__ == "__main__":
    sys.exit(main())
