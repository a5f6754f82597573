"""data_scripts/_fetch.py: resumable, checksum-verified, atomic downloads and safe extraction.

Downloads go through the real urllib code against a local HTTP server that honours (or ignores)
``Range`` requests and can drop the connection part-way, and against ``file://`` URLs.
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("_beniful_test_formats", Path(__file__).parent / "formats.py")
formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(formats)
fetch = formats.load_script("_fetch")

PAYLOAD = bytes(range(256)) * 3000  # 768,000 bytes: several read chunks
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range")
        srv.requests.append(rng)  # type: ignore[attr-defined]
        data = srv.payload  # type: ignore[attr-defined]
        start = 0
        if rng and not srv.ignore_range:  # type: ignore[attr-defined]
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        drop = srv.drops.pop(0) if srv.drops else None  # type: ignore[attr-defined]
        if drop is not None:  # send only part of the body, then hang up
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.payload, srv.requests, srv.drops, srv.ignore_range = PAYLOAD, [], [], False  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/archive.tar.gz"  # type: ignore[attr-defined]
    yield srv
    srv.shutdown()
    srv.server_close()


def _dl(url, dest, **kw):
    kw.setdefault("md5", MD5)
    return fetch.download(url, dest, quiet=True, timeout=10, backoff=0, **kw)


# ------------------------------------------------------------------------------------------ download


def test_file_url_download_is_verified_and_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "archive.bin"
    assert _dl(src.as_uri(), dest) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "out" / "archive.bin.part").exists()
    # a second call only verifies: the source may be gone
    src.unlink()
    assert _dl(src.as_uri(), dest) == dest


def test_sha256_is_accepted_too(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    _dl(src.as_uri(), tmp_path / "a.bin", md5=None, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert (tmp_path / "a.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_is_refused_and_nothing_is_kept(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD[:-1] + b"X")
    dest = tmp_path / "archive.bin"
    with pytest.raises(fetch.ChecksumError) as err:
        _dl(src.as_uri(), dest)
    assert MD5 in str(err.value) and "corrupt" in str(err.value)
    assert not dest.exists() and not (tmp_path / "archive.bin.part").exists()


def test_existing_corrupt_archive_is_refused_not_overwritten(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "archive.bin"
    dest.write_bytes(b"half an archive")
    with pytest.raises(fetch.ChecksumError, match=str(dest)):
        _dl(src.as_uri(), dest)
    assert dest.read_bytes() == b"half an archive"


def test_download_without_a_checksum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="md5 or a sha256"):
        fetch.download("file:///nonexistent", tmp_path / "x", md5=None, quiet=True)


def test_dropped_connection_resumes_with_range_on_next_run(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    server.drops = [300_000]
    with pytest.raises(fetch.DownloadError, match="run the same command again to resume"):
        _dl(server.url, dest, retries=0)
    part = tmp_path / "archive.tar.gz.part"
    assert part.stat().st_size == 300_000 and not dest.exists()
    _dl(server.url, dest, retries=0)
    assert dest.read_bytes() == PAYLOAD and not part.exists()
    assert server.requests == [None, "bytes=300000-"]


def test_dropped_connection_is_retried_within_one_run(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    server.drops = [100_000, 250_000]
    _dl(server.url, dest, retries=3)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=100000-", "bytes=350000-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    (tmp_path / "archive.tar.gz.part").write_bytes(PAYLOAD[:5000])
    server.ignore_range = True
    _dl(server.url, dest)
    assert dest.read_bytes() == PAYLOAD  # not 5000 bytes + the whole file


def test_bad_partial_file_is_detected_and_download_restarted(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    (tmp_path / "archive.tar.gz.part").write_bytes(b"\0" * 4096)  # garbage from another file
    _dl(server.url, dest)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == ["bytes=4096-", None]


def test_oversized_partial_file_416_is_restarted(server, tmp_path):
    dest = tmp_path / "archive.tar.gz"
    (tmp_path / "archive.tar.gz.part").write_bytes(b"\1" * (len(PAYLOAD) + 10))
    _dl(server.url, dest)
    assert dest.read_bytes() == PAYLOAD


def test_http_error_is_reported(server, tmp_path):
    class NotFound(_Handler):
        def do_GET(self):  # noqa: N802
            self.send_error(404, "no such file")

    server.RequestHandlerClass = NotFound
    with pytest.raises(fetch.DownloadError, match="404"):
        _dl(server.url, tmp_path / "x", retries=0)


def test_injected_opener_is_used(tmp_path):
    seen = []

    class Resp(io.BytesIO):
        status = 200
        headers = {"Content-Length": str(len(PAYLOAD))}

    def opener(req, timeout):
        seen.append(req.full_url)
        return Resp(PAYLOAD)

    _dl("https://example.invalid/a.tgz", tmp_path / "a.tgz", urlopen=opener)
    assert seen == ["https://example.invalid/a.tgz"]
    assert (tmp_path / "a.tgz").read_bytes() == PAYLOAD


# ------------------------------------------------------------------------------------------ extraction


def _tar_with(tmp_path: Path, members: list[tarfile.TarInfo], name: str = "evil.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz") as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size = size
    return ti


@pytest.mark.parametrize("name", ["../escaped.txt", "folder/../../escaped.txt", "/tmp/escaped_abs.txt"])
def test_tar_path_traversal_is_refused(tmp_path, name):
    archive = _tar_with(tmp_path, [_file("folder/ok.txt"), _file(name)])
    dest = tmp_path / "a" / "b"
    with pytest.raises(fetch.UnsafeArchiveError, match="leaves the target folder"):
        fetch.safe_extract(archive, dest)
    assert not (tmp_path / "a" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (dest / "folder" / "ok.txt").exists()  # checked before anything is written


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE])
def test_tar_links_and_devices_are_refused(tmp_path, kind):
    ti = tarfile.TarInfo("folder/link")
    ti.type = kind
    ti.linkname = "/etc/passwd"
    archive = _tar_with(tmp_path, [ti])
    with pytest.raises(fetch.UnsafeArchiveError, match="links and special files"):
        fetch.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "folder" / "link").exists()


def test_zip_path_traversal_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("folder/ok.txt", b"ok")
        zf.writestr("../escaped.txt", b"bad")
    with pytest.raises(fetch.UnsafeArchiveError):
        fetch.safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


def test_truncated_archive_is_refused_and_leaves_nothing(tmp_path):
    src = tmp_path / "src" / "folder"
    src.mkdir(parents=True)
    (src / "big.bin").write_bytes(bytes(range(256)) * 4000)
    archive = formats.tar_gz(src, tmp_path / "folder.tar.gz")
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    root = tmp_path / "root"
    with pytest.raises(fetch.CorruptArchiveError, match="truncated or corrupt"):
        fetch.install_folder(archive, root, "folder")
    assert list(root.iterdir()) == []  # neither the folder nor a staging leftover


def test_corrupt_zip_member_is_refused(tmp_path):
    archive = tmp_path / "f.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("folder/a.bin", b"A" * 1000)
    raw = bytearray(archive.read_bytes())
    raw[raw.index(b"A" * 1000) + 10] = ord("B")  # flip one stored byte: the CRC no longer matches
    archive.write_bytes(bytes(raw))
    with pytest.raises(fetch.CorruptArchiveError):
        fetch.install_folder(archive, tmp_path / "root", "folder")
    assert not (tmp_path / "root" / "folder").exists()


def test_install_folder_is_all_or_nothing(tmp_path):
    src = tmp_path / "src" / "folder"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("a")
    archive = formats.tar_gz(src, tmp_path / "folder.tar.gz")
    root = tmp_path / "root"

    def failing_prepare(staged: Path) -> None:
        assert (staged / "a.txt").read_text() == "a"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        fetch.install_folder(archive, root, "folder", prepare=failing_prepare)
    assert list(root.iterdir()) == []
    assert fetch.install_folder(archive, root, "folder") == root / "folder"
    assert (root / "folder" / "a.txt").read_text() == "a"
    assert [p.name for p in root.iterdir()] == ["folder"]
    with pytest.raises(FileExistsError):
        fetch.install_folder(archive, root, "folder")


def test_archive_without_the_expected_folder_is_refused(tmp_path):
    src = tmp_path / "src" / "other"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("a")
    archive = formats.tar_gz(src, tmp_path / "x.tar.gz")
    with pytest.raises(fetch.CorruptArchiveError, match="does not contain the folder 'folder'"):
        fetch.install_folder(archive, tmp_path / "root", "folder")


def test_default_root_follows_beniful_data(monkeypatch, tmp_path):
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path))
    assert fetch.default_root() == tmp_path
    monkeypatch.delenv("BENIFUL_DATA")
    # the loaders' rule: the checkout's data/ folder, whatever the working folder
    from beniful import paths

    assert fetch.default_root() == paths.data_root() == paths.repo_root() / "data"


def test_standalone_module_uses_only_the_standard_library():
    """data_scripts must run before the package (and torch) is installed."""
    text = (formats.REPO / "data_scripts" / "_fetch.py").read_text()
    for heavy in ("import torch", "import numpy", "import beniful", "import requests"):
        assert heavy not in text
    assert "pickle" not in text
    assert sys.modules.get("_beniful_data_scripts__fetch") is fetch
