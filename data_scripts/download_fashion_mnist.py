#!/usr/bin/env python
"""Download Fashion-MNIST into ``<root>/fashion-mnist`` for ``beniful.datasets.load("fashion-mnist")``.

    python data_scripts/download_fashion_mnist.py [--root DIR]     # DIR defaults to $BENIFUL_DATA or ./data

Fetches the four original gzipped idx files (Xiao, Rasul & Vollgraf, 2017; 30 MB in all), resuming a
broken download, and checks each against its published MD5 (the list torchvision uses) before it is
renamed into place; the loader then checks the decompressed content too. Re-running is a no-op once
the files are there. On Debian/Ubuntu, ``apt-get install dataset-fashion-mnist`` is the other way
to get them: the loader reads them from ``/usr/share/datasets/fashion-mnist`` by itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _fetch  # noqa: E402

BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FOLDER = "fashion-mnist"
#: the published MD5 of each original .gz file
FILES = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}


def prepare(root: str | Path | None = None, *, base_url: str | None = None, urlopen=None,
            quiet: bool = False) -> Path:
    """Make ``root/fashion-mnist`` hold the four verified files; returns that folder."""
    root = Path(root) if root is not None else _fetch.default_root()
    folder = root / FOLDER
    kw = {} if urlopen is None else {"urlopen": urlopen}
    for name, md5 in FILES.items():
        _fetch.download((base_url or BASE_URL) + name, folder / name, md5=md5, quiet=quiet, **kw)
    _fetch._log(f"Fashion-MNIST ready in {folder}", quiet)
    return folder


def main(argv: list[str] | None = None) -> int:
    return _fetch.main(argv, __doc__, FOLDER, prepare)


if __name__ == "__main__":
    sys.exit(main())
