"""Image datasets as uint8 tensors, and the registry of named datasets.

Everything is held as one ``uint8`` tensor ``N x C x H x W`` plus ``int64`` labels, so a whole
dataset can sit on the GPU (the fast training path) and poisoning is an index, not a copy on disk.

A dataset is a registered :class:`DatasetSpec` (name, number of classes, image shape, loader);
the built-in ones (the embedded ``mnist5k``, on-disk CIFAR-10 and Tiny ImageNet) live in
:mod:`beniful.builtin_datasets`. A user adds one the same way::

    datasets.register(datasets.DatasetSpec("my-digits", 10, (1, 28, 28), lambda root: (train, test)))
    zoo.get("badnets", dataset="my-digits")
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Mapping, Tuple

import numpy as np
import torch
from torch import Tensor

from . import paths
from .registry import Registry

__all__ = ["ImageDataset", "DatasetSpec", "DATASETS", "register", "get", "load", "available", "check_name",
           "data_root", "stratified_split", "stratified_sample", "DatasetNotFoundError", "UnsafePickleError", "INFO"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that must be downloaded first; the message names the data_scripts command."""


@dataclass
class ImageDataset(torch.utils.data.Dataset):
    """Images as ``uint8`` ``N x C x H x W`` and labels as ``int64`` ``N``.

    Indexing returns ``(float image in [0, 1], int label)`` like a torchvision dataset.
    """

    data: Tensor
    targets: Tensor
    name: str = ""
    classes: list[str] = field(default_factory=list)
    #: "<dataset>/train" or "<dataset>/test" when the object is exactly what :func:`load` returns;
    #: "" for subsets and hand-made sets (``zoo`` then adds a content hash to the cache key)
    source: str = ""

    def __post_init__(self) -> None:
        if self.data.dtype != torch.uint8 or self.data.ndim != 4:
            raise ValueError(f"data must be uint8 N x C x H x W, got {self.data.dtype} {tuple(self.data.shape)}")
        self.targets = torch.as_tensor(self.targets, dtype=torch.long)
        if len(self.data) != len(self.targets):
            raise ValueError(f"{len(self.data)} images but {len(self.targets)} labels")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.data[i].float() / 255.0, int(self.targets[i])

    @property
    def num_classes(self) -> int:
        """``len(classes)``, or the largest label + 1 for a set without class names."""
        return len(self.classes) if self.classes else int(self.targets.max()) + 1

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images."""
        c, h, w = self.data.shape[1:]
        return int(c), int(h), int(w)

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The whole set as tensors, the form every detector and eliminator works on.

        Returns:
            ``(float images in [0, 1], int64 labels)``, both new tensors.
        """
        return self.data.float() / 255.0, self.targets.clone()

    def subset(self, idx: Tensor | np.ndarray | list[int]) -> "ImageDataset":
        """The images at ``idx``, as a new set (``source`` is empty: a subset is not the dataset).

        Args:
            idx: integer indices.

        Returns:
            A new :class:`ImageDataset` with the same name and classes.
        """
        idx = torch.as_tensor(idx, dtype=torch.long)
        return ImageDataset(self.data[idx], self.targets[idx], self.name, list(self.classes))

    def split(self, fraction: float, seed: int = 0) -> tuple["ImageDataset", "ImageDataset"]:
        """Stratified split (:func:`beniful.datasets.stratified_split`).

        Args:
            fraction: share of each class in the first part, in (0, 1).
            seed: seed of the draw.

        Returns:
            ``(the part with fraction of each class, the rest)``.
        """
        a, b = stratified_split(self.targets, fraction, seed)
        return self.subset(a), self.subset(b)


def stratified_split(y: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices so that every class keeps its share in both parts (small sets stay balanced).

    Args:
        y: labels.
        fraction: share of each class in the first part, in (0, 1).
        seed: seed of the draw.

    Returns:
        Sorted index tensors ``(first, rest)`` with ``round(fraction * n_c)`` of every class ``c``
        in ``first``.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1); got {fraction!r}")
    g = torch.Generator().manual_seed(seed)
    first, rest = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = int(round(fraction * len(idx)))
        first.append(idx[:k])
        rest.append(idx[k:])
    return torch.sort(torch.cat(first)).values, torch.sort(torch.cat(rest)).values


def stratified_sample(y: Tensor, n: int, seed: int) -> Tensor:
    """Exactly ``n`` indices, spread over the classes in proportion to their sizes (largest remainder).

    :func:`stratified_split` rounds each class's share on its own, so a share below half an image
    per class (200 Tiny ImageNet classes, a few images each) gives every class none and the draw is
    empty; here each class gets the floor of its share and the leftover images go to the classes
    with the largest remainders (ties: lower class first), so ``n`` images over ``min(n, classes)``
    classes. Where every share is a whole number it draws exactly what ``stratified_split(y, n /
    len(y), seed)`` draws (same generator, same per-class permutations).

    Args:
        y: labels.
        n: how many indices, ``0 <= n <= len(y)``.
        seed: seed of the draw.

    Returns:
        Sorted indices, ``n`` of them.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= len(y):
        raise ValueError(f"n must be an integer in 0..{len(y)}, got {n!r}")
    classes = torch.unique(y).tolist()
    sizes = [int((y == c).sum()) for c in classes]
    exact = [n * s / len(y) for s in sizes] if len(y) else []
    take = [int(e) for e in exact]
    for i in sorted(range(len(classes)), key=lambda i: (-(exact[i] - take[i]), i))[:n - sum(take)]:
        take[i] += 1
    g = torch.Generator().manual_seed(seed)
    out = []
    for c, k in zip(classes, take):
        idx = torch.nonzero(y == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)][:k])
    return torch.sort(torch.cat(out)).values if out else torch.zeros(0, dtype=torch.long)


# ----------------------------------------------------------------------------------------------
# The dataset registry: one spec per dataset, so a new one is a registration, not an edit here.

#: the loader's type (it returns ``(train, test)``)
Loader = Callable[..., Tuple[ImageDataset, ImageDataset]]


@dataclass(frozen=True)
class DatasetSpec:
    """The facts about one dataset and the function that loads it.

    ``zoo`` reads ``num_classes`` and ``shape`` to build the model and its cache key before any data
    is loaded, so they must match what ``loader`` returns (:func:`load` checks it).

    Attributes:
        name: the name to register and list (``-`` and ``_`` are interchangeable in lookups).
        num_classes: number of classes; labels lie in ``0 .. num_classes - 1``.
        shape: ``(C, H, W)`` of every image.
        loader: ``loader(root) -> (train, test)``; ``root`` is the ``root`` given to :func:`load`
            (``None``: the default data folder, :func:`data_root`). Embedded or in-memory data
            ignores it.
        embedded: ``True`` when the data ships with the package (no download).
        download: the command that downloads the data (named in the "not found" error), or ``None``.
        family: the kind of image, which selects the per-family method defaults of
            :mod:`beniful.method_defaults` (``"natural"``: photos such as CIFAR-10, where every
            method keeps its paper's settings; ``"digits"``: no defense flips images).
    """

    name: str
    num_classes: int
    shape: tuple[int, int, int]
    loader: Loader = field(repr=False, compare=False)
    embedded: bool = False
    download: str | None = None
    family: str = "natural"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"dataset name must be a non-empty string, got {self.name!r}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        shape = tuple(self.shape)
        if len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
            raise ValueError(f"shape must be (C, H, W) of positive integers, got {self.shape!r}")
        object.__setattr__(self, "shape", shape)
        from .method_defaults import FAMILIES

        if self.family not in FAMILIES:
            raise ValueError(f"unknown image family {self.family!r}; valid families: {', '.join(FAMILIES)}")
        if not callable(self.loader):
            raise TypeError(f"loader must be callable as loader(root) -> (train, test), got {self.loader!r}")

    def info(self) -> dict[str, Any]:
        """The spec as the plain dict of the former ``INFO`` table.

        Returns:
            ``{"num_classes", "shape", "embedded"}`` plus ``"script"`` (the download command) when
            there is one.
        """
        out: dict[str, Any] = {"num_classes": self.num_classes, "shape": self.shape, "embedded": self.embedded}
        if self.download:
            out["script"] = self.download
        return out


#: every data set :func:`load` knows, by name (:func:`register` adds one)
DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset, after which :func:`load`, ``zoo.get(dataset=...)`` and the notebooks accept its name.

    Args:
        spec: the dataset's facts and loader, registered under ``spec.name``.

    Returns:
        ``spec``.

    Raises:
        ValueError: a dataset of that name (in any ``-``/``_`` spelling) is already registered.
        TypeError: ``spec`` is not a :class:`DatasetSpec`.
    """
    return DATASETS.add_spec(spec, DatasetSpec)


def get(name: str) -> DatasetSpec:
    """The registered spec of a dataset.

    Args:
        name: one of :func:`available`, case and ``-``/``_`` ignored.

    Returns:
        Its :class:`DatasetSpec`.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    return DATASETS.get(name)


def available() -> list[str]:
    """The registered dataset names.

    Returns:
        Sorted names as registered, e.g. ``["cifar10", "mnist5k", "tiny-imagenet"]``.
    """
    return DATASETS.available()


def check_name(name: str) -> str:
    """Validate a dataset name and return its registered spelling (``"Tiny_ImageNet"`` -> ``"tiny-imagenet"``).

    Args:
        name: a dataset name in any spelling.

    Returns:
        The registered spelling, used in cache keys and result tables.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    return DATASETS.canonical(str(name))


class _InfoView(Mapping[str, Dict[str, Any]]):
    """Read-only, live ``{name: spec.info()}`` view of the registry (the former ``INFO`` dict)."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        try:
            return get(name).info()
        except (ValueError, TypeError) as exc:
            raise KeyError(str(exc)) from None

    def __iter__(self) -> Iterator[str]:
        return iter(available())

    def __len__(self) -> int:
        return len(DATASETS)


#: a backwards-compatible read-only view of the registry (``INFO[name]["num_classes"]``); prefer :func:`get`
INFO: Mapping[str, Dict[str, Any]] = _InfoView()


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where on-disk datasets live (:func:`beniful.paths.data_root`).

    Args:
        root: an explicit folder, or ``None`` for ``$BENIFUL_DATA`` / the checkout's ``data/``.

    Returns:
        The folder that holds the datasets' own folders.
    """
    return paths.data_root(root)


def load(name: str, root: str | os.PathLike | None = None) -> tuple[ImageDataset, ImageDataset]:
    """Return ``(train, test)`` for a registered dataset.

    The two sets are marked with ``source = "<name>/train"`` and ``"<name>/test"``: they are the
    dataset itself, so ``zoo`` keys models trained on them by name rather than by a content hash.

    Args:
        name: one of :func:`available`, case and ``-``/``_`` ignored.
        root: the data folder for on-disk datasets (``None``: :func:`data_root`).

    Returns:
        ``(train, test)`` as :class:`ImageDataset` (uint8 images).

    Raises:
        ValueError: unknown name, or the loader returned data that contradicts the spec.
        DatasetNotFoundError: an on-disk dataset is missing; the message names the download command.
    """
    spec = get(name)
    out = spec.loader(root)
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(d, ImageDataset) for d in out)):
        raise ValueError(f"the loader of dataset {spec.name!r} must return (train, test) ImageDatasets, "
                         f"got {type(out).__name__}")
    for part, ds in zip(("train", "test"), out):
        if ds.shape != spec.shape:
            raise ValueError(f"dataset {spec.name!r}: {part} images have shape {ds.shape}, the spec says {spec.shape}")
        if len(ds) and (int(ds.targets.min()) < 0 or int(ds.targets.max()) >= spec.num_classes):
            raise ValueError(f"dataset {spec.name!r}: {part} labels span {int(ds.targets.min())}.."
                             f"{int(ds.targets.max())}, the spec has {spec.num_classes} classes")
        ds.name = ds.name or spec.name
        ds.source = f"{spec.name}/{part}"
    return out


# The built-in datasets register themselves (like the attacks and methods do) in their own module;
# imported last because their loaders use the names above.
from .builtin_datasets import (  # noqa: E402,F401  (re-exported)
    CIFAR10_FOLDER, TINY_FOLDER, UnsafePickleError, load_cifar10, load_mnist5k, load_tiny_imagenet, safe_unpickle,
)
