"""Tables in notebooks: where a table's CSV goes, how it is shown, and text that nbval can compare."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from .. import paths, results
from .run import Run

__all__ = ["table_name", "write_table", "display_path", "show_table", "seed_table", "glue", "sanitize"]


def table_name(run: Run, name: str) -> str:
    """``name`` for the default seed 0, ``name_seeds0-1-2`` for any other seed list, so a multi-seed
    run writes beside the single-seed table instead of over it."""
    return name if run.seeds == [0] else f"{name}_seeds{'-'.join(str(s) for s in run.seeds)}"


def write_table(df: Any, run: Run, name: str) -> list[Path]:
    """Write ``df`` to ``results/<profile>/<dataset>/<name>.csv``, one file per data set (via
    :func:`beniful.results.write_table`), so each data set's results live where a single-dataset
    run writes them; runs over seeds other than ``[0]`` get the suffix of :func:`table_name`.

    Args:
        df: the tidy table; its ``dataset`` column says where each row goes (a table without one
            belongs to the run's only data set).
        run: the notebook's run.
        name: the table's name, e.g. ``"table2"``.

    Returns:
        The paths written, in the run's data-set order.

    Raises:
        ValueError: ``df`` has no ``dataset`` column but the run covers several data sets, or it
            names a data set outside the run.
    """
    if "dataset" not in df:
        if len(run.datasets) > 1:
            raise ValueError(f"table {name!r} has no 'dataset' column, but the run covers {', '.join(run.datasets)}")
        parts = {run.dataset: df}
    else:
        extra = sorted(set(df["dataset"]) - set(run.datasets))
        if extra:
            raise ValueError(f"table {name!r} holds rows of {extra}, not data sets of this run ({', '.join(run.datasets)})")
        parts = {ds: df[df["dataset"] == ds] for ds in run.datasets if (df["dataset"] == ds).any()}
    return [results.write_table(part, run.profile, ds, table_name(run, name), root=paths.results_root())
            for ds, part in parts.items()]


def display_path(path: Any) -> str:
    """:func:`beniful.paths.display_path` of one path, or of each of several joined by ``", "`` (what
    :func:`write_table` returns), for the line a notebook prints after writing its table."""
    if isinstance(path, (str, Path)):
        return paths.display_path(path)
    return ", ".join(paths.display_path(p) for p in path)


def show_table(df: Any, percent: Sequence[str] = (), digits: int = 1, caption: str | None = None):
    """An HTML table for the book: fractions in ``percent`` columns shown as percentages."""
    from IPython.display import HTML

    shown = df.copy()
    for c in percent:
        if c in shown:
            shown[c] = shown[c].map(lambda v: "–" if v != v else f"{100 * v:.{digits}f}")
    html = shown.to_html(index=False, escape=True, border=0, classes="dataframe beniful-table")
    if caption:
        html = f"<p><em>{caption}</em></p>" + html
    return HTML(html)


def seed_table(df: Any, index: str | Sequence[str], columns: str, values: Sequence[str], percent: bool = True,
               digits: int = 1) -> Any:
    """Wide table of ``values`` per ``index`` x ``columns``: the mean over seeds, written
    ``mean ± std`` when the rows hold more than one seed (std over seeds, ddof 0), in % when
    ``percent``. Column names are ``"<value> <column>"``; row order is first appearance.

    Args:
        df: tidy rows with a ``seed`` column (absent: one seed).
        index: the row key, one column or several (``["dataset", "attack"]``: one block of rows per data set).
        columns: the column whose values become column groups.
        values: the metrics shown.
        percent: show fractions as percentages.
        digits: decimals shown.

    Returns:
        The wide DataFrame, ``index`` columns first.
    """
    import pandas as pd

    keys = [index] if isinstance(index, str) else list(index)
    n_seeds = df["seed"].nunique() if "seed" in df else 1
    scale = 100.0 if percent else 1.0
    g = df.groupby([*keys, columns], sort=False)[list(values)]
    mean, std = g.mean() * scale, g.std(ddof=0) * scale

    def cell(m: float, s: float) -> str:
        if m != m:
            return "–"
        return f"{m:.{digits}f}" if n_seeds < 2 else f"{m:.{digits}f} ± {s:.{digits}f}"

    out = pd.DataFrame({v: [cell(m, sd) for m, sd in zip(mean[v], std[v])] for v in values}, index=mean.index)
    wide = out.unstack(columns)
    order_cols = list(dict.fromkeys(df[columns]))
    wide = wide.reindex(columns=[(v, c) for v in values for c in order_cols])
    wide.columns = [f"{v} {c}" for v, c in wide.columns]
    rows = list(dict.fromkeys(df[keys[0]] if len(keys) == 1 else zip(*(df[k] for k in keys))))
    return wide.reindex(rows).reset_index()


def glue(name: str, fig: Any) -> None:
    """Store ``fig`` under ``name`` for the book's other pages (myst-nb glue; hidden on this page).

    The landing page shows a summary figure this way without copying image files around. A no-op
    where myst-nb is not installed (it comes with jupyter-book).
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover
        return
    _glue(name, fig, display=False)


_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")
_TMP = re.compile(r"/tmp/ipykernel_\d+/\d+\.py")


def sanitize(text: str) -> str:
    """Remove memory addresses and ipykernel temp paths (they change every run; nbval compares text)."""
    return _TMP.sub("<cell>", _ADDR.sub("", text))

