"""data_scripts/download_cifar10.py: archive -> verified -> extracted -> loadable by beniful.datasets."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from pathlib import Path

import pytest
import torch

from beniful import datasets

_spec = importlib.util.spec_from_file_location("_beniful_test_formats", Path(__file__).parent / "formats.py")
formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(formats)
script = formats.load_script("download_cifar10")


@pytest.fixture
def archive(tmp_path):
    """A small cifar-10-python.tar.gz with the official layout, and its md5."""
    written = formats.write_cifar10(tmp_path / "src", n=4)
    (tmp_path / "mirror").mkdir()
    path = formats.tar_gz(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "mirror" / "cifar-10-python.tar.gz")
    return path, hashlib.md5(path.read_bytes()).hexdigest(), written


def test_official_constants():
    assert script.MD5 == "c58f30108f718f92721af3b95e74349a"
    assert script.URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert script.FOLDER == datasets.CIFAR10_FOLDER


def test_download_extract_and_load(archive, tmp_path):
    path, md5, written = archive
    root = tmp_path / "data"
    folder = script.prepare(root, url=path.as_uri(), md5=md5, quiet=True)
    assert folder == root / "cifar-10-batches-py"
    assert (root / "cifar-10-python.tar.gz").is_file()  # kept: a re-run is a no-op
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    train, test = datasets.load("cifar10", root=root)
    assert len(train) == 20 and len(test) == 4
    assert torch.equal(test.data.flatten(1), torch.from_numpy(written["test_batch"][0]))
    # second run: nothing downloaded (the source is gone) and nothing changes
    path.unlink()
    assert script.prepare(root, url=path.as_uri(), md5=md5, quiet=True) == folder


def test_cli_with_local_archive_and_default_root(archive, tmp_path, monkeypatch):
    path, md5, _ = archive
    monkeypatch.setattr(script, "MD5", md5)  # the test archive stands in for the official one
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path / "envroot"))
    assert script.main(["--archive", str(path), "--quiet"]) == 0
    train, _ = datasets.load("cifar10", root=tmp_path / "envroot")
    assert len(train) == 20
    assert not (tmp_path / "envroot" / "cifar-10-python.tar.gz").exists()  # --archive: nothing downloaded


def test_cli_download_via_url(archive, tmp_path, monkeypatch):
    path, md5, _ = archive
    monkeypatch.setattr(script, "MD5", md5)
    root = tmp_path / "data"
    assert script.main(["--root", str(root), "--url", path.as_uri(), "--remove-archive", "--quiet"]) == 0
    assert [p.name for p in root.iterdir()] == ["cifar-10-batches-py"]


def test_wrong_checksum_is_refused_and_nothing_extracted(archive, tmp_path, capsys):
    path, _, _ = archive
    root = tmp_path / "data"
    # the official md5 does not match the small test archive
    rc = script.main(["--root", str(root), "--url", path.as_uri(), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "error:" in err and script.MD5 in err and "corrupt" in err
    assert not (root / "cifar-10-batches-py").exists()
    assert not (root / "cifar-10-python.tar.gz").exists()
    assert not (root / "cifar-10-python.tar.gz.part").exists()


def test_local_archive_with_wrong_checksum_is_refused(archive, tmp_path, capsys):
    path, _, _ = archive
    rc = script.main(["--root", str(tmp_path / "data"), "--archive", str(path), "--quiet"])
    assert rc == 1 and script.MD5 in capsys.readouterr().err
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()


def test_archive_missing_a_batch_is_refused(tmp_path):
    formats.write_cifar10(tmp_path / "src", n=1)
    (tmp_path / "src" / "cifar-10-batches-py" / "data_batch_5").unlink()
    path = formats.tar_gz(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "c.tar.gz")
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(script._fetch.CorruptArchiveError, match="data_batch_5"):
        script.prepare(tmp_path / "data", archive=path, md5=md5, quiet=True)
    assert not (tmp_path / "data" / "cifar-10-batches-py").exists()


def test_traversal_member_in_a_verified_archive_is_refused(tmp_path):
    """A checksum only proves the file is the one named; extraction still checks every path."""
    formats.write_cifar10(tmp_path / "src", n=1)
    path = tmp_path / "c.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
        ti = tarfile.TarInfo("cifar-10-batches-py/../../escaped.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"bad"))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    root = tmp_path / "deep" / "data"
    with pytest.raises(script._fetch.UnsafeArchiveError):
        script.prepare(root, archive=path, md5=md5, quiet=True)
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (root / "cifar-10-batches-py").exists()


def test_incomplete_existing_folder_is_reported(tmp_path):
    formats.write_cifar10(tmp_path, n=1)
    (tmp_path / "cifar-10-batches-py" / "test_batch").unlink()
    with pytest.raises(FileExistsError, match="lacks test_batch"):
        script.prepare(tmp_path, url="file:///nonexistent", quiet=True)


def test_loader_error_names_this_script(tmp_path):
    """The command the loader prints is a real file that accepts --root."""
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        datasets.load("cifar10", root=tmp_path)
    cmd = datasets.INFO["cifar10"]["script"]
    assert cmd in str(err.value)
    assert (formats.REPO / cmd.split()[-1]).is_file()
    with pytest.raises(SystemExit) as help_exit:
        script.main(["--help"])
    assert help_exit.value.code == 0
