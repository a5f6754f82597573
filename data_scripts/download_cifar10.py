#!/usr/bin/env python
"""Download CIFAR-10 (python version) into ``<root>/cifar-10-batches-py`` for ``beniful.datasets.load("cifar10")``.

    python data_scripts/download_cifar10.py [--root DIR]     # DIR defaults to $BENIFUL_DATA or ./data

Fetches the official ``cifar-10-python.tar.gz`` (Krizhevsky, 2009; 170,498,071 bytes), resuming a
broken download, checks its published MD5, and extracts it safely (every member path checked,
the folder renamed into place only when complete). Re-running is a no-op once the data is there.
``--archive FILE`` uses an archive fetched by other means (it is verified the same way).
"""
from __future__ import annotations

import argparse
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
    if archive is not None:
        archive = Path(archive)
        _fetch.verify(archive, md5=md5)
    else:
        kw = {} if urlopen is None else {"urlopen": urlopen}
        archive = _fetch.download(url, root / FILENAME, md5=md5, quiet=quiet, **kw)
    _fetch._log(f"extracting {archive} into {root}", quiet)
    _fetch.install_folder(archive, root, FOLDER, prepare=_check_complete)
    if remove_archive and archive == root / FILENAME:
        archive.unlink()
    _fetch._log(f"CIFAR-10 ready in {final}", quiet)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None,
                    help="data folder (default: $BENIFUL_DATA, else ./data); the data lands in ROOT/" + FOLDER)
    ap.add_argument("--url", default=None, help="mirror of " + FILENAME + " (default: the official one)")
    ap.add_argument("--archive", type=Path, default=None, help="use this local copy of " + FILENAME)
    ap.add_argument("--remove-archive", action="store_true", help="delete the downloaded archive after extraction")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        prepare(args.root, url=args.url, archive=args.archive, remove_archive=args.remove_archive, quiet=args.quiet)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
