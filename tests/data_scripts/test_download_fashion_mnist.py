"""data_scripts/download_fashion_mnist.py and the fashion-mnist loader: verified files or a clear error."""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import pytest
import torch

from beniful import builtin_datasets, datasets

_spec = importlib.util.spec_from_file_location("_beniful_test_formats", Path(__file__).parent / "formats.py")
formats = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(formats)
script = formats.load_script("download_fashion_mnist")

DEBIAN = builtin_datasets.FASHION_SYSTEM_DIR
needs_debian = pytest.mark.skipif(not (DEBIAN / "t10k-labels-idx1-ubyte.gz").is_file(),
                                  reason="Debian's dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")


def test_published_checksums_and_names_match_the_loader():
    assert script.FILES["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert {n[:-3] for n in script.FILES} == set(builtin_datasets.FASHION_FILES)
    assert script.FOLDER == builtin_datasets.FASHION_FOLDER


def test_missing_data_names_both_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin_datasets, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        datasets.load("fashion-mnist", root=tmp_path)
    assert "download_fashion_mnist.py" in str(err.value) and "apt-get install dataset-fashion-mnist" in str(err.value)


def test_a_corrupt_file_is_refused_with_the_expected_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin_datasets, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for name in builtin_datasets.FASHION_FILES:
        (folder / f"{name}.gz").write_bytes(gzip.compress(b"\0\0\x08\x01" + b"\0" * 12))
    with pytest.raises(ValueError, match="expected 47,040,016 bytes with MD5 f4a8712d"):
        datasets.load("fashion-mnist", root=tmp_path)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a readable gzip"):
        datasets.load("fashion-mnist", root=tmp_path)


@needs_debian
def test_debians_copy_loads_with_every_class(tmp_path, monkeypatch):
    train, test = datasets.load("fashion-mnist", root=tmp_path / "empty")
    assert train.shape == test.shape == (1, 28, 28) and (len(train), len(test)) == (60000, 10000)
    assert torch.bincount(train.targets).tolist() == [6000] * 10
    assert train.source == "fashion-mnist/train" and train.classes[9] == "Ankle boot"
    # not near-binary like MNIST: many grey levels
    assert len(torch.unique(test.data)) > 200


@needs_debian
def test_download_verifies_each_file_and_the_loader_reads_the_result(tmp_path, monkeypatch):
    # Debian recompressed the .gz files: against the published checksums its copies are refused ...
    with pytest.raises(ValueError, match="(?i)checksum|md5"):
        script.prepare(tmp_path / "data", base_url=DEBIAN.as_uri() + "/", quiet=True)
    assert not list((tmp_path / "data").rglob("*.gz"))  # nothing unverified left under a final name
    # ... and with their own checksums they are fetched, put in place and loaded from there
    import hashlib

    own = {n: hashlib.md5((DEBIAN / n).read_bytes()).hexdigest() for n in script.FILES}
    monkeypatch.setattr(script, "FILES", own)
    folder = script.prepare(tmp_path / "data", base_url=DEBIAN.as_uri() + "/", quiet=True)
    monkeypatch.setattr(builtin_datasets, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    assert builtin_datasets.fashion_mnist_folder(tmp_path / "data") == folder
    train, _ = datasets.load("fashion-mnist", root=tmp_path / "data")
    assert len(train) == 60000
