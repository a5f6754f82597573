"""Where the package reads data and writes results and caches: one resolver for each root.

Each root follows the same rule, so a library call, a notebook kernel started in ``notebooks/``
(papermill ``--cwd notebooks``) and a benchmark script started anywhere agree:

1. an explicit ``root`` argument;
2. the environment variable (``BENIFUL_DATA``, ``BENIFUL_RESULTS``, ``BENIFUL_CACHE``);
3. the checkout holding the package (``<checkout>/data``, ``<checkout>/results``,
   ``<checkout>/.cache``) when the package is run from a source tree;
4. otherwise ``./data`` and ``./results`` below the current folder, and ``~/.cache/beniful``
   for the cache (an installed package has no checkout to write into).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["repo_root", "data_root", "results_root", "cache_root", "display_path"]

PathLike = str | os.PathLike


def repo_root(start: PathLike | None = None) -> Path | None:
    """The checkout that holds this package, if the package runs from one.

    Args:
        start: folder to search upwards from; by default the current folder, then this package's
            own folder (so an installed-in-place package is found from any working folder).

    Returns:
        The first folder holding both ``pyproject.toml`` and ``beniful/__init__.py``, or ``None``.
    """
    starts = [Path(start)] if start is not None else [Path.cwd(), Path(__file__).parent]
    for s in starts:
        here = s.resolve()
        for d in (here, *here.parents):
            if (d / "pyproject.toml").is_file() and (d / "beniful" / "__init__.py").is_file():
                return d
    return None


def _resolve(root: PathLike | None, var: str, in_checkout: str, fallback: Path) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(var)
    if env:
        return Path(env).expanduser()
    checkout = repo_root()
    return checkout / in_checkout if checkout is not None else fallback


def data_root(root: PathLike | None = None) -> Path:
    """Folder of the on-disk data sets (CIFAR-10, Tiny ImageNet, Fashion-MNIST).

    Args:
        root: explicit folder, used as given (``~`` expanded).

    Returns:
        ``root`` when given, else ``$BENIFUL_DATA``, else ``<checkout>/data``, else ``./data``.
    """
    return _resolve(root, "BENIFUL_DATA", "data", Path("data"))


def results_root(root: PathLike | None = None) -> Path:
    """Root of the tidy result tables (``<root>/<profile>/<dataset>/<name>.csv``).

    Args:
        root: an explicit root that overrides the environment and the checkout.

    Returns:
        ``root``, else ``$BENIFUL_RESULTS``, else ``<checkout>/results``, else ``./results`` (not created).
    """
    return _resolve(root, "BENIFUL_RESULTS", "results", Path("results"))


def cache_root(root: PathLike | None = None) -> Path:
    """Folder of the model, detector and repair caches (created when missing).

    Args:
        root: explicit folder; wins over everything else.

    Returns:
        ``root``, else ``$BENIFUL_CACHE``, else ``<checkout>/.cache``, else ``~/.cache/beniful``.
    """
    d = _resolve(root, "BENIFUL_CACHE", ".cache", Path.home() / ".cache" / "beniful")
    d.mkdir(parents=True, exist_ok=True)
    return d


def display_path(path: PathLike) -> str:
    """``path`` relative to the checkout when inside it, else its name: stable text for outputs
    that nbval compares and that must not show a user's home folder.

    Args:
        path: a file or folder (relative paths are resolved against the current folder).

    Returns:
        The POSIX path relative to the checkout, e.g. ``"results/quick/mnist5k/table2.csv"``, or
        the last component alone when outside any checkout.
    """
    p = Path(path).resolve()
    root = repo_root()
    if root is not None:
        try:
            return p.relative_to(root).as_posix()
        except ValueError:
            pass
    return p.name
