"""Reading the results tree back for the book: every CSV, its provenance, the best file per table."""
from __future__ import annotations

import os
from typing import Any

from .. import paths

__all__ = ["collect_results", "describe_provenance", "read_result"]


#: tables of the development log (how defaults were chosen, by code that has changed since), shown
#: on their own book page and never among the current results
DEVELOPMENT_TABLES: tuple[str, ...] = ("elimination_defaults",)


def collect_results(root: str | os.PathLike | None = None,
                    include_development: bool = False) -> list[tuple[str, str, str, Any]]:
    """Every ``results/<profile>/<dataset>/<name>.csv`` as ``(profile, dataset, name, DataFrame)``,
    quick profile first, then the others alphabetically.

    Args:
        root: results root (default :func:`beniful.paths.results_root`).
        include_development: also the development log's tables (:data:`DEVELOPMENT_TABLES`).

    Returns:
        The tables with where they come from.
    """
    import pandas as pd

    base = paths.results_root(root)
    found = []
    for path in sorted(base.glob("*/*/*.csv")):
        if not include_development and path.stem.startswith(DEVELOPMENT_TABLES):
            continue
        profile, dataset = path.parent.parent.name, path.parent.name
        found.append((profile, dataset, path.stem, pd.read_csv(path)))
    return sorted(found, key=lambda t: (t[0] != "quick", t[0], t[1], t[2]))


def describe_provenance(df: Any, profile: str, dataset: str) -> str:
    """``profile / dataset / device / seeds`` of a result table from its provenance columns; a GPU's
    own name (column ``device_name``, e.g. ``NVIDIA H200``) is added to ``cuda``."""
    devices = sorted(set(map(str, df["device"]))) if "device" in df else ["?"]
    if "device_name" in df and devices == ["cuda"]:
        names = sorted(set(map(str, df["device_name"])))
        devices = [f"cuda ({', '.join(names)})"]
    seeds = sorted(set(int(s) for s in df["seed"])) if "seed" in df else []
    return (f"profile={profile} / dataset={dataset} / device={','.join(devices)} / "
            f"seeds={','.join(map(str, seeds)) or '?'}")




def read_result(profile: str, dataset: str, name: str, root: str | os.PathLike | None = None,
                multi_seed: bool = True) -> Any:
    """``results/<profile>/<dataset>/<name>.csv`` or its multi-seed version (``<name>_seeds0-1-2.csv``),
    whichever covers most seeds (``multi_seed=False``: the single-seed file only); None when neither exists."""
    import pandas as pd

    base = paths.results_root(root)
    best, n_best = None, 0
    for p in sorted((base / profile / dataset).glob(f"{name}*.csv")):
        if p.stem != name and not (multi_seed and p.stem.startswith(f"{name}_seeds")):
            continue
        df = pd.read_csv(p)
        df.attrs["source"] = f"{profile}/{dataset}/{p.name}"
        n = df["seed"].nunique() if "seed" in df else 1
        if n > n_best:
            best, n_best = df, n
    return best


