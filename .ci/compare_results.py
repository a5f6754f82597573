"""Check that two results trees hold the same tables: the smoke grid run through SLURM against `make smoke`.

Usage: python .ci/compare_results.py REFERENCE_DIR OTHER_DIR [--atol A]

Every CSV of REFERENCE_DIR must exist in OTHER_DIR with the same columns and rows. Columns that
measure time or speed (seconds, images/s, ratios of times) and the version columns are left out;
other numbers must agree within --atol (both runs used the same torch thread counts, so they
normally agree exactly; the tolerance only absorbs float noise), everything else exactly.
Exits 1 listing every difference.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

#: columns that are clocks or depend on them, or on the machine, not on the computation
SKIP = re.compile(r"seconds|second|images/s|ratio|speed-up|wall|min_time|_version$|device_name")


def compare(ref: Path, other: Path, atol: float) -> list[str]:
    """Every difference between the CSVs of ``ref`` and ``other`` (empty when they agree)."""
    problems = []
    files = sorted(ref.glob("*.csv"))
    if not files:
        return [f"no CSV in {ref}"]
    for f in files:
        g = other / f.name
        if not g.is_file():
            problems.append(f"{f.name}: missing in {other}")
            continue
        a, b = pd.read_csv(f), pd.read_csv(g)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            problems.append(f"{f.name}: shape/columns differ {a.shape} {list(a.columns)} vs {b.shape} {list(b.columns)}")
            continue
        worst = 0.0
        for col in a.columns:
            if SKIP.search(col):
                continue
            x, y = a[col], b[col]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                xv, yv = x.to_numpy(float), y.to_numpy(float)
                same_nan = np.isnan(xv) == np.isnan(yv)
                diff = np.abs(np.nan_to_num(xv) - np.nan_to_num(yv))
                worst = max(worst, float(diff.max(initial=0.0)))
                bad = ~same_nan | (diff > atol)
            else:
                both_missing = (x.isna() & y.isna()).to_numpy()
                bad = (x.astype(object).astype(str) != y.astype(object).astype(str)).to_numpy() & ~both_missing
            for i in np.flatnonzero(bad)[:5]:
                problems.append(f"{f.name} row {i} column {col!r}: {x.iloc[i]!r} vs {y.iloc[i]!r}")
        print(f"{f.name}: {len(a)} rows, largest difference {worst:.2g}")
    return problems


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reference", type=Path)
    p.add_argument("other", type=Path)
    p.add_argument("--atol", type=float, default=1e-6)
    a = p.parse_args()
    problems = compare(a.reference, a.other, a.atol)
    for line in problems:
        print("DIFFERENT:", line)
    print("same tables" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
