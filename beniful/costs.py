"""The cost table (table5): what the benchmarks measured, beside what each method's paper claims.

BeniFul's practical edge is cost: about one forward pass per input where STRIP needs
20-100, TeCo 76, SCALE-UP and IBD-PSC 6. The benchmark scripts (``benchmarks/bench_detection.py``,
``benchmarks/bench_elimination.py``) time every method in one run on one machine and write CSVs;
this module only reads them, so the notebook stays fast and its numbers keep the provenance of the
run that made them (device, threads, repeats, profile) instead of timing a shared CI machine.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from . import paths

__all__ = ["PAPER_PASSES", "ACCEPTANCE", "COMMANDS", "bench_path", "load_bench", "missing_note", "command", "bench_provenance",
           "detection_costs", "elimination_costs", "acceptance", "plot_costs"]

#: forward passes per input each paper states (low, high, as written); "plain" is one inference.
#: STRIP: N = 20-100 superimposed copies (Gao et al., ACSAC 2019; N = 100 in its experiments);
#: SCALE-UP: the input plus 5 amplified copies; IBD-PSC: the input plus 5 BN-amplified models;
#: TeCo: the input plus 15 corruptions x 5 severities; BeniFul: about one (arXiv 2410.14723).
PAPER_PASSES: dict[str, tuple[float, float, str]] = {
    "plain": (1, 1, "1"), "beniful": (1, 1, "~1"), "strip": (20, 100, "20-100"),
    "scale_up": (6, 6, "6"), "ibd_psc": (6, 6, "6"), "teco": (76, 76, "76"),
}

#: our CPU target. BeniFul's throughput must be at least this multiple of the method's,
#: each method at its paper's settings (``settings == "defaults"`` rows of the benchmark CSV)
ACCEPTANCE: tuple[tuple[str, float], ...] = (("plain", 0.6), ("scale_up", 5.0), ("strip", 50.0))

#: the command that writes each CSV (``--profile``/``--dataset`` filled in by :func:`load_bench`,
#: the rest by :func:`command` from the CSV's own provenance columns)
COMMANDS: dict[str, str] = {
    "bench_detection": "python benchmarks/bench_detection.py --profile {profile} --dataset {dataset}",
    "bench_elimination": "python benchmarks/bench_elimination.py --profile {profile} --dataset {dataset}",
}


def bench_path(name: str, profile: str, dataset: str, root: str | os.PathLike | None = None) -> Path:
    """``<results>/<profile>/<dataset>/<name>.csv`` (results root: :func:`beniful.paths.results_root`).

    Args:
        name: a benchmark table, a key of :data:`COMMANDS` (``"bench_detection"``, ``"bench_elimination"``).
        profile: profile name.
        dataset: data set name.
        root: results root; ``None`` resolves it.

    Returns:
        The CSV's path (it may not exist).

    Raises:
        ValueError: ``name`` is not a benchmark table.
    """
    if name not in COMMANDS:
        raise ValueError(f"unknown benchmark table {name!r}; valid: {', '.join(COMMANDS)}")
    base = paths.results_root(root)
    return base / profile / dataset / f"{name}.csv"


def missing_note(name: str, profile: str, dataset: str) -> str:
    """What to say when a benchmark CSV is not there: which command writes it.

    Args:
        name: a benchmark table, a key of :data:`COMMANDS`.
        profile: profile name.
        dataset: data set name.

    Returns:
        One sentence naming the missing CSV and the command that makes it.
    """
    cmd = COMMANDS[name].format(profile=profile, dataset=dataset)
    return f"{name}.csv for profile={profile}, dataset={dataset} is not measured yet; make it with: {cmd}"


def load_bench(name: str, profile: str, dataset: str, root: str | os.PathLike | None = None,
               missing_ok: bool = False) -> pd.DataFrame | None:
    """The benchmark CSV (the notebook never runs the benchmark itself: timings belong to a quiet
    machine). A missing one raises FileNotFoundError naming the command that writes it, or gives
    None with ``missing_ok`` (a profile whose benchmarks have not run yet).

    Args:
        name: a benchmark table, a key of :data:`COMMANDS`.
        profile: profile name.
        dataset: data set name.
        root: results root; ``None`` resolves it.
        missing_ok: return ``None`` instead of raising when the CSV is missing.

    Returns:
        The table without the rows of methods that crashed in the benchmark, or ``None``.

    Raises:
        FileNotFoundError: the CSV is missing and ``missing_ok`` is false.
        ValueError: ``name`` is not a benchmark table.
    """
    path = bench_path(name, profile, dataset, root)
    if not path.is_file():
        if missing_ok:
            return None
        raise FileNotFoundError(missing_note(name, profile, dataset))
    df = pd.read_csv(path)
    if "error" in df:  # a method that crashed in the benchmark has a row with its error and no timing
        df = df[df["error"].isna()].copy()
    return df


def command(name: str, df: pd.DataFrame) -> str:
    """The command that reproduces ``df`` (a CSV written by the benchmark ``name``): its profile,
    dataset, device, repeats and threads, read from the CSV's provenance columns.

    Args:
        name: the benchmark that wrote ``df``, a key of :data:`COMMANDS`.
        df: the benchmark table.

    Returns:
        A shell command line.

    Raises:
        ValueError: ``name`` is not a benchmark table.
    """
    if name not in COMMANDS:
        raise ValueError(f"unknown benchmark table {name!r}; valid: {', '.join(COMMANDS)}")

    def one(col: str, default: str = "?") -> str:
        vals = sorted(set(map(str, df[col]))) if col in df and len(df) else [default]
        return vals[0] if len(vals) == 1 else ",".join(vals)

    cmd = COMMANDS[name].format(profile=one("profile"), dataset=one("dataset"))
    return f"{cmd} --device {one('device', 'auto')} --repeats {one('repeats', '3')} --threads {one('threads', '1')}"


def bench_provenance(df: pd.DataFrame) -> str:
    """One line: where and how the benchmark ran (the absolute numbers mean nothing without it).

    Args:
        df: a benchmark table.

    Returns:
        Device, threads, repeats, profile, data set, attack, seed and torch version, one line.
    """
    def one(col: str) -> str:
        vals = sorted(set(map(str, df[col]))) if col in df else ["?"]
        return ",".join(vals)

    return (f"device={one('device')} ({one('device_name')}), torch threads={one('threads')}, "
            f"repeats={one('repeats')}, profile={one('profile')}, dataset={one('dataset')}, "
            f"attack={one('attack')}, seed={one('seed')}, torch {one('torch_version')}")


def _settings_rank(s: str) -> int:
    return 0 if s == "defaults" else 1


def detection_costs(df: pd.DataFrame) -> pd.DataFrame:
    """Per detector and settings: passes per input (declared, counted at the model's first and
    last layer, and the paper's), images/s, ratio to plain inference, and BeniFul's speed-up over it.

    Args:
        df: the detection benchmark table (columns ``detector``, ``settings``, ``images_per_second``,
            ``forward_passes``).

    Returns:
        One row per detector and settings, in the order of :data:`PAPER_PASSES`, paper settings first.

    Raises:
        ValueError: ``df`` lacks one of the columns above.
    """
    need = {"detector", "settings", "images_per_second", "forward_passes"}
    if not need <= set(df.columns):
        raise ValueError(f"detection benchmark table lacks columns {sorted(need - set(df.columns))}")
    ben = df[(df.detector == "beniful") & (df.settings == "defaults")]
    b = float(ben.images_per_second.iloc[0]) if len(ben) else float("nan")
    plain = df[df.detector == "plain"]
    p = float(plain.images_per_second.iloc[0]) if len(plain) else float("nan")
    rows = []
    for r in df.itertuples():
        lo, hi, text = PAPER_PASSES.get(r.detector, (float("nan"), float("nan"), "?"))
        rows.append({
            "detector": r.detector, "settings": r.settings,
            "passes (ours)": float(r.forward_passes),
            "passes counted, first layer": float(getattr(r, "measured_passes_first_layer", float("nan"))),
            "passes counted, last layer": float(getattr(r, "measured_passes_last_layer", float("nan"))),
            "passes (paper)": text, "paper_low": lo, "paper_high": hi,
            "images/s": float(r.images_per_second),
            "ratio vs plain": float(r.images_per_second) / p,
            "beniful speed-up": b / float(r.images_per_second),
        })
    out = pd.DataFrame(rows)
    order = {n: i for i, n in enumerate(PAPER_PASSES)}
    out["_o"] = out.detector.map(lambda n: order.get(n, len(order)))
    out["_s"] = out.settings.map(_settings_rank)
    return out.sort_values(["_o", "_s"]).drop(columns=["_o", "_s"]).reset_index(drop=True)


def elimination_costs(df: pd.DataFrame) -> pd.DataFrame:
    """Per eliminator: wall time of ``repair``, its ratio to fine-tuning (FT), and ACC/ASR before
    and after (a fast defense that leaves the backdoor in is visible as such).

    Args:
        df: the elimination benchmark table (columns ``eliminator``, ``settings``, ``wall_seconds``).

    Returns:
        One row per eliminator and settings, BeniFul first, then FT, FP, NAD, ANP and I-BAU.

    Raises:
        ValueError: ``df`` lacks one of the columns above.
    """
    need = {"eliminator", "settings", "wall_seconds"}
    if not need <= set(df.columns):
        raise ValueError(f"elimination benchmark table lacks columns {sorted(need - set(df.columns))}")
    out = pd.DataFrame({"eliminator": df.eliminator, "settings": df.settings, "wall s": df.wall_seconds.astype(float)})
    ft = df[df.eliminator == "ft"]
    out["ratio vs FT"] = out["wall s"] / (float(ft.wall_seconds.iloc[0]) if len(ft) else float("nan"))
    for c in ("acc_before", "acc", "asr_before", "asr"):
        if c in df:
            out[c] = df[c].astype(float).values
    order = ("beniful", "ft", "fp", "nad", "anp", "ibau")
    out["_o"] = out.eliminator.map(lambda n: order.index(n) if n in order else len(order))
    return out.sort_values(["_o", "settings"]).drop(columns="_o").reset_index(drop=True)


def acceptance(det: pd.DataFrame, need: Sequence[tuple[str, float]] = ACCEPTANCE) -> pd.DataFrame:
    """Issue 6's checks on a :func:`detection_costs` table, each method at its paper's settings:
    rows ``(versus, need, measured, passed)`` with measured = BeniFul images/s / the method's.

    Args:
        det: a :func:`detection_costs` table.
        need: ``(method, minimum speed-up)`` pairs; default :data:`ACCEPTANCE`.

    Returns:
        One row per check.

    Raises:
        ValueError: BeniFul or a method of ``need`` has no row at its default settings.
    """
    d = det[det.settings == "defaults"].set_index("detector")
    if "beniful" not in d.index:
        raise ValueError("the detection benchmark has no BeniFul row at its default settings")
    rows = []
    for other, minimum in need:
        if other not in d.index:
            raise ValueError(f"the detection benchmark has no {other!r} row at its default (paper) settings; "
                             f"rows: {', '.join(sorted(d.index))}")
        ratio = float(d.loc["beniful", "images/s"]) / float(d.loc[other, "images/s"])
        rows.append({"versus": other, "need": float(minimum), "measured": ratio, "passed": ratio >= minimum})
    return pd.DataFrame(rows)


def plot_costs(det: pd.DataFrame, elim: pd.DataFrame | None, palette: dict[str, Any], title: str = ""):
    """Three log-scale panels: detection images/s, forward passes per input (ours vs the paper's
    range), elimination wall time. Returns the figure.

    Args:
        det: a :func:`detection_costs` table.
        elim: an :func:`elimination_costs` table, or ``None`` (two panels only).
        palette: a colour per method name (grey for the others).
        title: the figure's title.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    def log_axis(ax: Any) -> None:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
        fmt = ScalarFormatter()
        fmt.set_scientific(False)
        ax.xaxis.set_major_formatter(fmt)
        ax.xaxis.set_minor_formatter(NullFormatter())

    n = 3 if elim is not None and len(elim) else 2
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.9))
    d = det.copy()
    d["label"] = [r.detector if r.settings == "defaults" else f"{r.detector} ({r.settings})" for r in d.itertuples()]
    cols = [palette.get(n_, (0.5, 0.5, 0.5)) for n_ in d.detector]
    y = np.arange(len(d))
    ax = axes[0]
    ax.barh(y, d["images/s"], color=cols)
    ax.set_yticks(y, d.label)
    ax.invert_yaxis()
    log_axis(ax)
    ax.set_xlabel("images / s (log)")
    ax.set_title("detection throughput")

    ax = axes[1]
    dd = d[d.settings == "defaults"].reset_index(drop=True)
    y = np.arange(len(dd))
    ax.barh(y - 0.2, dd["passes (ours)"], height=0.4, color=[palette.get(n_, (0.5, 0.5, 0.5)) for n_ in dd.detector])
    ax.barh(y + 0.2, dd["paper_high"], height=0.4, color="none", edgecolor="0.3", hatch="//")
    ranged = dd["paper_low"] < dd["paper_high"]
    ax.scatter(dd["paper_low"][ranged], (y + 0.2)[ranged.to_numpy()], marker="|", s=120, color="0.1", zorder=3)
    ax.set_yticks(y, dd.detector)
    ax.invert_yaxis()
    log_axis(ax)
    ax.set_xlabel("forward passes per input (log)")
    ax.set_title("cost per input")
    ax.legend(handles=[Patch(facecolor="0.6", label="ours (paper settings)"),
                       Patch(facecolor="none", edgecolor="0.3", hatch="//", label="paper (| = low end)")],
              fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)

    if n == 3:
        ax = axes[2]
        e = elim.reset_index(drop=True)
        y = np.arange(len(e))
        ax.barh(y, e["wall s"], color=[palette.get(n_, (0.5, 0.5, 0.5)) for n_ in e.eliminator])
        ax.set_yticks(y, e.eliminator)
        ax.invert_yaxis()
        log_axis(ax)
        ax.set_xlabel("repair wall time, s (log)")
        ax.set_title("elimination cost")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
