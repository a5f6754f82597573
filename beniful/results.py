"""Tidy result tables: ``results/<profile>/<dataset>/<name>.csv``, written atomically.

Every row carries the profile, dataset, seed and device that produced it, plus library versions,
so no number in the book is separated from how it was made.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import pandas as pd

from . import paths
from .cache import atomic_write_text

__all__ = ["results_dir", "write_table", "provenance"]


def results_dir(profile: str, dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of one profile's tables on one data set.

    Args:
        profile: profile name, e.g. ``"quick"``.
        dataset: data set name, e.g. ``"mnist5k"``.
        root: results root; ``None`` resolves it (:func:`beniful.paths.results_root`).

    Returns:
        ``<root>/<profile>/<dataset>`` (not created).
    """
    return paths.results_root(root) / profile / dataset


def provenance() -> dict[str, str]:
    """The library versions a result row records.

    Returns:
        ``{"beniful": ..., "torch": ..., "python": ...}`` version strings.
    """
    import torch

    from . import __version__

    return {"beniful": __version__, "torch": torch.__version__, "python": platform.python_version()}


def write_table(df: pd.DataFrame, profile: str, dataset: str, name: str,
                root: str | os.PathLike | None = None) -> Path:
    """Write ``df`` (plus version columns) to ``results/<profile>/<dataset>/<name>.csv``; returns the path.

    Args:
        df: the tidy table, one row per measurement (fractions in [0, 1]).
        profile: profile name.
        dataset: data set name.
        name: table name, e.g. ``"table2"``.
        root: results root; ``None`` resolves it (:func:`beniful.paths.results_root`).

    Returns:
        The path written; the write is atomic, so a reader never sees half a file.
    """
    df = df.copy()
    for k, v in provenance().items():
        df[f"{k}_version"] = v
    path = results_dir(profile, dataset, root) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
    return path
