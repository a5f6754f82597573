"""Shared download and extraction helpers for the data_scripts (standard library only).

Why a helper of our own: the data sets are a few hundred MB from university servers, so a
download must survive a dropped connection (resume with an HTTP ``Range`` request), must never
leave a half-written archive under the final name (``<name>.part`` then an atomic rename after
the checksum matched), and must refuse an archive whose checksum is wrong. Extraction refuses any
member that would land outside the target folder (absolute paths, ``..``, links, devices) and
writes into a staging folder that is renamed into place only when complete, so an interrupted
extraction never looks like a finished data set.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

__all__ = [
    "DownloadError", "ChecksumError", "CorruptArchiveError", "UnsafeArchiveError", "default_root", "file_hash", "verify",
    "download", "safe_extract", "install_folder", "install_archive", "main",
]

CHUNK = 1 << 20
UrlOpen = Callable[..., object]


class DownloadError(RuntimeError):
    """The archive could not be fetched completely."""


class ChecksumError(ValueError):
    """A file's checksum differs from the published one: corrupt, partial or not the right file."""


class CorruptArchiveError(ValueError):
    """An archive that cannot be read to its end, or lacks the expected folder."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder, or is a link or device."""


def default_root() -> Path:
    """Where the loaders look: :func:`beniful.paths.data_root` (``$BENIFUL_DATA``, else the checkout's
    ``data/``, else ``./data``); the same rule without the package installed."""
    try:
        from beniful.paths import data_root
    except ImportError:  # the scripts also run without the package installed
        env = os.environ.get("BENIFUL_DATA")
        checkout = Path(__file__).resolve().parent.parent
        if env:
            return Path(env)
        return checkout / "data" if (checkout / "beniful" / "__init__.py").is_file() else Path("data")
    return data_root()


def file_hash(path: str | os.PathLike, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: str | os.PathLike, md5: str | None = None, sha256: str | None = None) -> None:
    """Raise :class:`ChecksumError` (naming the file, the expected and the actual digest) on a mismatch."""
    if md5 is None and sha256 is None:
        raise ValueError("verify needs an md5 or a sha256 to compare against")
    for algorithm, expected in (("md5", md5), ("sha256", sha256)):
        if expected is None:
            continue
        actual = file_hash(path, algorithm)
        if actual.lower() != expected.lower():
            size = os.path.getsize(path)
            raise ChecksumError(
                f"{path}: {algorithm} is {actual} but the published value is {expected} ({size:,} bytes); "
                "the archive is corrupt, incomplete or not the expected file"
            )


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _fetch_once(url: str, part: Path, urlopen: UrlOpen, timeout: float, quiet: bool) -> None:
    """Append to ``part`` from where it stops (HTTP Range); restart it when the server ignores the range.

    Raises :class:`DownloadError` when the connection ends before the announced length.
    """
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "beniful-data-scripts"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the part file is already complete
            return
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    with resp:  # type: ignore[attr-defined]
        status = getattr(resp, "status", None) or getattr(resp, "code", None)
        if have and status == 206:
            mode, expected_total = "ab", None
            crange = resp.headers.get("Content-Range", "")  # type: ignore[attr-defined]
            if crange.startswith(f"bytes {have}-") and "/" in crange and not crange.endswith("/*"):
                expected_total = int(crange.rsplit("/", 1)[1])
            _log(f"resuming {url} at byte {have:,}", quiet)
        else:  # 200, or a file:// URL (no status): the whole file from its start
            if have:
                _log(f"{url}: server ignored the range request; restarting the download", quiet)
            mode, have, expected_total = "wb", 0, None
        length = resp.headers.get("Content-Length")  # type: ignore[attr-defined]
        if expected_total is None and length is not None and length.isdigit():
            expected_total = have + int(length)
        got = have
        with open(part, mode) as out:
            while True:
                try:
                    chunk = resp.read(CHUNK)  # type: ignore[attr-defined]
                except (OSError, ValueError, http.client.HTTPException) as exc:  # e.g. IncompleteRead
                    raise DownloadError(f"{url}: connection lost after {got:,} bytes ({exc})") from None
                if not chunk:
                    break
                out.write(chunk)
                got += len(chunk)
            out.flush()
            os.fsync(out.fileno())
    if expected_total is not None and got < expected_total:
        raise DownloadError(f"{url}: connection closed after {got:,} of {expected_total:,} bytes")


def download(url: str, dest: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None,
             urlopen: UrlOpen = urllib.request.urlopen, retries: int = 3, timeout: float = 60.0,
             backoff: float = 2.0, quiet: bool = False) -> Path:
    """Fetch ``url`` to ``dest`` and verify it; resumable, atomic, idempotent.

    * ``dest`` already there: verified and returned (a wrong checksum raises, it is not overwritten,
      because only a verified file is ever renamed to ``dest``: someone else put it there).
    * Bytes go to ``dest + ".part"``; a dropped connection is resumed with ``Range`` up to
      ``retries`` times (waiting ``backoff`` x attempt seconds), and again on the next run. Only
      after the checksum matched is the part file renamed to ``dest`` (``os.replace``, atomic on
      one file system).
    * A checksum mismatch deletes the part file; if that part had been resumed, the download is
      restarted once from scratch before giving up with :class:`ChecksumError`.

    ``urlopen`` is injectable for tests (any callable like ``urllib.request.urlopen``).
    """
    dest = Path(dest)
    if dest.exists():
        verify(dest, md5, sha256)
        _log(f"{dest} already present and verified", quiet)
        return dest
    if md5 is None and sha256 is None:
        raise ValueError("download needs an md5 or a sha256: an unverified archive is never accepted")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    restarted = False
    attempt = 0
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            _log(f"downloading {url} -> {dest}", quiet)
            _fetch_once(url, part, urlopen, timeout, quiet)
        except DownloadError as exc:
            attempt += 1
            if attempt > retries:
                kept = (f" The partial file {part} is kept: run the same command again to resume."
                        if part.exists() and part.stat().st_size else "")
                raise DownloadError(f"{exc}; giving up after {retries} retries.{kept}") from None
            _log(f"{exc}; retrying ({attempt}/{retries})", quiet)
            time.sleep(backoff * attempt)
            continue
        try:
            verify(part, md5, sha256)
        except ChecksumError as exc:
            part.unlink(missing_ok=True)
            if resumed and not restarted:
                _log(f"{exc}; the resumed part file was bad, downloading again from the start", quiet)
                restarted = True
                continue
            raise ChecksumError(f"{exc}. The download was deleted; check the URL or your network and run again") from None
        os.replace(part, dest)
        return dest


# ----------------------------------------------------------------------------------------------
# Extraction


def _check_member_name(name: str, archive: Path) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or name.startswith(("/", "\\")) or ".." in path.parts or (
        path.parts and ":" in path.parts[0]
    ):
        raise UnsafeArchiveError(f"{archive}: refusing member {name!r}, whose path leaves the target folder")
    return path


def _tar_members(tf: tarfile.TarFile, archive: Path) -> Iterable[tarfile.TarInfo]:
    for m in tf.getmembers():
        _check_member_name(m.name, archive)
        if not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: refusing member {m.name!r} (links and special files are not extracted)")
        yield m


def _extract_into(archive: Path, staging: Path) -> None:
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise CorruptArchiveError(f"{archive}: member {bad!r} fails its CRC check (corrupt archive)")
                for info in zf.infolist():
                    _check_member_name(info.filename, archive)
                    mode = info.external_attr >> 16
                    if mode and (mode & 0o170000) == 0o120000:
                        raise UnsafeArchiveError(f"{archive}: refusing symbolic link {info.filename!r}")
                zf.extractall(staging)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = list(_tar_members(tf, archive))
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: a second, independent guard
                    tf.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover
                    tf.extractall(staging, members=members)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise CorruptArchiveError(f"{archive} is not a readable archive (truncated or corrupt?): {exc}") from None


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a .tar(.gz) or .zip into ``dest`` after checking every member path; returns ``dest``."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _extract_into(archive, dest)
    return dest


def install_folder(archive: str | os.PathLike, root: str | os.PathLike, folder: str,
                   prepare: Callable[[Path], None] | None = None) -> Path:
    """Extract ``archive`` (which holds ``folder/...``) so that ``root/folder`` appears complete or not at all.

    Extraction (and ``prepare(staged_folder)``, e.g. Tiny ImageNet's val reorganisation) happen in
    a staging folder inside ``root``; the finished folder is then renamed into place.
    """
    archive, root = Path(archive), Path(root)
    final = root / folder
    if final.exists():
        raise FileExistsError(f"{final} already exists; delete it to extract {archive} again")
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}.extracting-", dir=root))
    try:
        _extract_into(archive, staging)
        staged = staging / folder
        if not staged.is_dir():
            top = sorted(p.name for p in staging.iterdir())
            raise CorruptArchiveError(f"{archive} does not contain the folder {folder!r} (top level: {top})")
        if prepare is not None:
            prepare(staged)
        os.replace(staged, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def install_archive(root: Path, folder: str, filename: str, url: str, md5: str, *, archive: str | os.PathLike | None,
                    remove_archive: bool, urlopen: UrlOpen | None, quiet: bool, name: str,
                    prepare: Callable[[Path], None] | None = None, note: str = "") -> Path:
    """Install ``root/folder`` from an archive: a local copy (``archive``, checked against ``md5``)
    or a verified download to ``root/filename``, extracted by :func:`install_folder`.

    The one flow of the archive data sets (CIFAR-10, Tiny ImageNet); each script checks first
    whether its folder is already there, since what "complete" means is its own.

    Args:
        root: the data folder.
        folder: the folder the archive holds (and that lands in ``root``).
        filename: the archive's file name, where a download is written.
        url: where to download it from when no ``archive`` is given.
        md5: the archive's published MD5.
        archive: a local copy to use instead of downloading; ``None``: download.
        remove_archive: delete the downloaded archive after extraction (a local copy is kept).
        urlopen: stand-in for ``urllib.request.urlopen`` (tests); ``None``: the real one.
        quiet: print nothing.
        name: the data set's name for the messages.
        prepare: run on the extracted folder before it is renamed into place.
        note: added to the "extracting" message (e.g. how many files).

    Returns:
        ``root/folder``.
    """
    if archive is not None:
        archive = Path(archive)
        verify(archive, md5=md5)
    else:
        kw = {} if urlopen is None else {"urlopen": urlopen}
        archive = download(url, root / filename, md5=md5, quiet=quiet, **kw)
    _log(f"extracting {archive} into {root}{note}", quiet)
    install_folder(archive, root, folder, prepare=prepare)
    if remove_archive and archive == root / filename:
        archive.unlink()
    _log(f"{name} ready in {root / folder}", quiet)
    return root / folder


def main(argv: list[str] | None, doc: str, folder: str, prepare: Callable[..., Path],
         archive_name: str | None = None, source_help: str = "the official one") -> int:
    """The command line every download script shares: parse, run ``prepare``, report an error in one line.

    Args:
        argv: the arguments (``None``: ``sys.argv[1:]``).
        doc: the script's docstring (its first line is the description).
        folder: the folder the data lands in under ``--root``.
        prepare: the script's ``prepare(root, **options)``.
        archive_name: the archive's file name for a data set that comes as one archive: adds
            ``--url``, ``--archive`` and ``--remove-archive``; ``None``: a set of files fetched from
            ``--base-url``.
        source_help: who serves the default download, for the help text.

    Returns:
        0, or 1 after printing ``error: ...`` to stderr.
    """
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--root", type=Path, default=None,
                    help=f"data folder (default: $BENIFUL_DATA, else ./data); the data lands in ROOT/{folder}")
    if archive_name is not None:
        ap.add_argument("--url", default=None, help=f"mirror of {archive_name} (default: {source_help})")
        ap.add_argument("--archive", type=Path, default=None, help=f"use this local copy of {archive_name}")
        ap.add_argument("--remove-archive", action="store_true", help="delete the downloaded archive after extraction")
    else:
        ap.add_argument("--base-url", default=None, help=f"mirror holding the files (default: {source_help})")
    ap.add_argument("--quiet", action="store_true")
    options = vars(ap.parse_args(argv))
    root = options.pop("root")
    try:
        prepare(root, **options)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
