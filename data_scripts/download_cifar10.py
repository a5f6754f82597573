#!/usr/bin/env python
"""Download CIFAR-10 (python version) into ``<root>/cifar-10-batches-py`` for ``beniful.datasets.load("cifar10")``.

    python data_scripts/download_cifar10.py [--root DIR]     # DIR defaults to $BENIFUL_DATA or ./data

Fetches the official ``cifar-10-python.tar.gz`` (Krizhevsky, 2009; 170,498,071 bytes), resuming a
broken download, checks its published MD5, and extracts it safely (every member path checked,
the folder renamed into place only when complete). Re-running is a no-op once the data is there.
``--archive FILE`` uses an archive fetched by other means (it is verified the same way).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _fetch  # noqa: E402

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
FILENAME = "cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


def missing_files(folder: Path) -> list[str]:
    return [f for f in FILES if not (folder / f).is_file()]


def _check_complete(folder: Path) -> None:
    missing = missing_files(folder)
    if missing:
        raise _fetch.CorruptArchiveError(f"the archive's {FOLDER}/ lacks {', '.join(missing)}")


def prepare(root: str | Path | None = None, *, url: str | None = None, md5: str | None = None,
            archive: str | Path | None = None, urlopen=None, remove_archive: bool = False, quiet: bool = False) -> Path:
    """Make ``root/cifar-10-batches-py`` complete; returns that folder. Arguments as on the command line."""
    root = Path(root) if root is not None else _fetch.default_root()
    url, md5 = url or URL, md5 or MD5
    final = root / FOLDER
    if final.is_dir():
        missing = missing_files(final)
        if not missing:
            _fetch._log(f"CIFAR-10 already present in {final}", quiet)
            return final
        raise FileExistsError(f"{final} exists but lacks {', '.join(missing)}; delete that folder and run again")
    return _fetch.install_archive(root, FOLDER, FILENAME, url, md5, archive=archive, remove_archive=remove_archive,
                                  urlopen=urlopen, quiet=quiet, name="CIFAR-10", prepare=_check_complete)


def main(argv: list[str] | None = None) -> int:
    return _fetch.main(argv, __doc__, FOLDER, prepare, archive_name=FILENAME)


if __name__ == "__main__":
    sys.exit(main())
