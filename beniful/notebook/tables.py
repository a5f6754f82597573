"""Tables in notebooks: where a table's CSV goes, how it is shown, and text that nbval can compare."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from .. import paths, results
from .run import Run

__all__ = ["table_name", "write_table", "show_table", "seed_table", "glue", "sanitize"]


def table_name(run: Run, name: str) -> str:
    """``name`` for the default seed 0, ``name_seeds0-1-2`` for any other seed list, so a multi-seed
    run writes beside the single-seed table instead of over it."""
    return name if run.seeds == [0] else f"{name}_seeds{'-'.join(str(s) for s in run.seeds)}"


def write_table(df: Any, run: Run, name: str) -> Path:
    """Write ``df`` to ``results/<profile>/<dataset>/<name>.csv`` (via :func:`beniful.results.write_table`);
    runs over seeds other than ``[0]`` get the suffix of :func:`table_name`."""
    return results.write_table(df, run.profile, run.dataset, table_name(run, name), root=paths.results_root())


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


def seed_table(df: Any, index: str, columns: str, values: Sequence[str], percent: bool = True,
               digits: int = 1) -> Any:
    """Wide table of ``values`` per ``index`` x ``columns``: the mean over seeds, written
    ``mean ± std`` when the rows hold more than one seed (std over seeds, ddof 0), in % when
    ``percent``. Column names are ``"<value> <column>"``; row order is first appearance."""
    import pandas as pd

    n_seeds = df["seed"].nunique() if "seed" in df else 1
    scale = 100.0 if percent else 1.0
    g = df.groupby([index, columns], sort=False)[list(values)]
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
    return wide.reindex(list(dict.fromkeys(df[index]))).reset_index()



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

