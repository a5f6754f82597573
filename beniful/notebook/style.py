"""One figure style for the whole book: a colour-blind palette, a fixed colour per name, PNG only."""
from __future__ import annotations

from typing import Sequence

from .. import profiles
from .run import HEADLINE

__all__ = ["style", "palette"]

#: fixed colour per name within each family, so "beniful" or "blended" has the same colour in every figure
_FAMILIES: tuple[tuple[str, ...], ...] = (
    ("none",) + profiles.ATTACK_NAMES,
    HEADLINE["detectors"],
    HEADLINE["eliminators"],
    ("clean", "triggered"),
)


def style() -> None:
    """seaborn's colour-blind palette on a white grid; PNG only (SVG ids break nbval).

    Changes matplotlib's and seaborn's global style (rcParams) and, inside a Jupyter kernel, the
    inline backend's format: call it from a notebook, not from library code.
    """
    import matplotlib as mpl
    import seaborn as sns

    try:  # a kernel started with MPLBACKEND=Agg would store no figure at all: force inline there
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and type(shell).__name__ == "ZMQInteractiveShell":
            shell.run_line_magic("matplotlib", "inline")
    except ImportError:  # pragma: no cover - outside IPython
        pass
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "figure.autolayout": False,
                         "axes.titlesize": "medium", "image.cmap": "viridis"})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:  # pragma: no cover - outside IPython
        pass


def palette(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """A stable colour for each name (colour-blind palette; BeniFul always gets the first colour)."""
    import seaborn as sns

    base = sns.color_palette("colorblind", 10)
    out = {}
    for n in names:
        fam = next((f for f in _FAMILIES if n in f), None)
        i = fam.index(n) if fam is not None else sorted(names).index(n)
        out[n] = base[i % len(base)]
    return out

