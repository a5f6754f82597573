"""Run a notebook's grid from the other end, so that a second kernel can share its work.

Every model, detector and repair a notebook computes goes through the cache, one lock per entry
(:mod:`beniful.cache`): a second kernel that runs the same notebook over its data sets, attacks
and seeds in reverse order fills the cache from the far end, and the first kernel loads what the
second has finished and waits for what it holds, so neither computes an entry twice. ``make
notebooks`` and ``make nbval`` split table1 and table3 (the two notebooks that take longest, both
loops over data sets, attacks and seeds) across two cores this way. The second kernel's executed
notebook and tables go to a scratch directory; only the first one's are kept.

Command line (the Makefile's ``prefetch-<notebook>`` target passes its output to papermill ``-y``)::

    python -m beniful.notebook.prefetch --profile quick [--dataset NAMES] [--attacks NAMES] [--seed 0,1,2]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .run import _check_seeds, choose, resolve_datasets

__all__ = ["reversed_params", "main"]


def reversed_params(profile: str = "quick", dataset: Any = None, attacks: Any = None,
                    seed: Any = 0) -> dict[str, Any]:
    """The papermill parameters that run a notebook's grid in reverse order.

    Args:
        profile: a registered profile name.
        dataset: as the notebook's ``dataset`` parameter (``None``: the profile's default set, those on
            disk only, as :func:`beniful.notebook.setup` resolves it).
        attacks: as the notebook's ``attacks`` parameter (``None``: the headline set).
        seed: as the notebook's ``seed`` parameter.

    Returns:
        ``{"profile", "dataset", "attacks", "seed"}``: the same cases as the notebook with these
        parameters would run, with data sets, attacks and seeds each reversed. The data-set list is
        explicit, so a missing default data set stays out of the second kernel's run too.

    Raises:
        ValueError: an unknown profile, data set, attack or a bad seed (naming the valid values).
    """
    names, _ = resolve_datasets(profile, dataset)
    return {"profile": profile, "dataset": names[::-1], "attacks": choose("attacks", attacks)[::-1],
            "seed": _check_seeds(seed)[::-1]}


def main(argv: Sequence[str] | None = None) -> int:
    """Print :func:`reversed_params` as JSON (which papermill's ``-y`` reads as YAML).

    Args:
        argv: the command-line arguments (``None``: ``sys.argv[1:]``).

    Returns:
        The exit status (0).
    """
    ap = argparse.ArgumentParser(prog="python -m beniful.notebook.prefetch", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--dataset", default=None, help="a name or comma-separated names (default: the profile's set)")
    ap.add_argument("--attacks", default=None, help="comma-separated names (default: the headline attacks)")
    ap.add_argument("--seed", default="0", help="a seed or comma-separated seeds")
    args = ap.parse_args(argv)
    print(json.dumps(reversed_params(args.profile, args.dataset or None, args.attacks or None, args.seed)))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through the Makefile
    raise SystemExit(main())
