"""Tables and figures of the ablations (table4) and of Backdoor Consistency (fig3).

The pivots and heatmaps live here so that the notebooks stay a list of calls, and so that the
same layout is drawn for every profile and data set.
"""
from __future__ import annotations

from typing import Any, Sequence

from .style import palette

__all__ = ["layer_signal_table", "clean_fraction_table", "plot_layer_ablation", "plot_form_lambda",
           "consistency_table", "plot_consistency", "consistency_split", "plot_consistency_split"]

#: the detector's signals in the order the tables show them (reconstruction, consistency, combined)
SIGNALS: tuple[str, ...] = ("r", "c", "both")
#: the models of fig3, in the order of the figure's panels
MODELS: tuple[str, ...] = ("clean", "backdoored", "repaired")


def _layer_grid(by_layer: Any, metric: str, layers: Sequence[str], attacks: Sequence[str]) -> Any:
    grid = by_layer.pivot_table(index="attack", columns=["layer", "signal"], values=metric, sort=False)
    return grid.reindex(columns=[(la, s) for la in layers for s in SIGNALS]).reindex(list(attacks))


def layer_signal_table(by_layer: Any, metric: str, layers: Sequence[str], attacks: Sequence[str]) -> Any:
    """Wide table of ``metric`` per attack (rows) and layer x signal (columns ``"layer3 both"``).

    Args:
        by_layer: rows of :func:`beniful.ablations.detection_by_layer`.
        metric: a metric column, e.g. ``"auroc"`` or ``"tpr_at_5fpr"``.
        layers: the layers, in column order.
        attacks: the attacks, in row order.

    Returns:
        DataFrame with an ``attack`` column and one column per layer and signal (mean over seeds).
    """
    wide = _layer_grid(by_layer, metric, layers, attacks)
    wide.columns = [f"{la} {s}" for la, s in wide.columns]
    return wide.reset_index()


def clean_fraction_table(by_fraction: Any, attacks: Sequence[str]) -> Any:
    """AUROC and TPR at 5% FPR of the combined score per attack and clean-data fraction
    (columns ``"auroc @0.05"``), from :func:`beniful.ablations.detection_by_clean_fraction` rows."""
    frac = by_fraction[by_fraction.signal == "both"].pivot_table(index="attack", columns="clean_fraction",
                                                                  values=["auroc", "tpr_at_5fpr"], sort=False)
    metrics = ["auroc", "tpr_at_5fpr"]
    frac = frac[sorted(frac.columns, key=lambda c: (metrics.index(c[0]), c[1]))]  # fractions ascending
    frac.columns = [f"{m} @{f:g}" for m, f in frac.columns]
    return frac.reindex(list(attacks)).reset_index()


def plot_layer_ablation(by_layer: Any, by_fraction: Any, layers: Sequence[str], attacks: Sequence[str],
                        clean_fractions: Sequence[float], layer: str, title: str = ""):
    """Heatmaps of AUROC and TPR at 5% FPR per attack x (layer, signal), and the combined score's
    AUROC against the clean-data fraction at ``layer``.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 3, figsize=(13, 0.55 * len(attacks) + 2.2), gridspec_kw={"width_ratios": [2.2, 2.2, 1.3]})
    for ax, metric, name in ((axes[0], "auroc", "AUROC"), (axes[1], "tpr_at_5fpr", "TPR at 5% FPR")):
        grid = _layer_grid(by_layer, metric, layers, attacks)
        sns.heatmap(grid.to_numpy(), ax=ax, vmin=0.5 if metric == "auroc" else 0.0, vmax=1.0, cmap="viridis",
                    annot=True, fmt=".2f", annot_kws={"fontsize": 7}, cbar=False,
                    xticklabels=[s for _ in layers for s in SIGNALS], yticklabels=list(attacks))
        for k in range(1, len(layers)):
            ax.axvline(len(SIGNALS) * k, color="white", lw=3)
        top = ax.secondary_xaxis("top")  # layer names above each group of signals
        top.set_xticks([len(SIGNALS) * k + len(SIGNALS) / 2 for k in range(len(layers))], list(layers), fontsize=9)
        top.tick_params(length=0)
        ax.set_title(name)
        ax.tick_params(axis="y", rotation=0)
        ax.tick_params(axis="x", rotation=0, labelsize=8)
    both = by_fraction[by_fraction.signal == "both"]
    col = palette(list(attacks))
    for a, g in both.groupby("attack", sort=False):
        axes[2].plot(g.clean_fraction, g.auroc, marker="o", color=col[a], label=a)
    axes[2].set_xscale("log")
    axes[2].set_xticks(list(clean_fractions), [f"{f:g}" for f in clean_fractions])
    axes[2].minorticks_off()
    axes[2].set_xlabel("clean-data fraction")
    axes[2].set_ylabel(f"AUROC (both, {layer})")
    axes[2].set_ylim(min(0.8, float(both.auroc.min()) - 0.02), 1.005)
    axes[2].legend(fontsize=7, loc="lower right")
    axes[2].set_title("clean-data fraction")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_form_lambda(by_form: Any, forms: Sequence[str], lams: Sequence[float], form0: str, lam0: float,
                     title: str = ""):
    """Per attack, heatmaps of ASR and ACC after repair over loss form x lambda (a cross through the
    default ``(form0, lam0)``; blank cells were not run), from
    :func:`beniful.ablations.elimination_by_form` rows.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    attacks = list(dict.fromkeys(by_form.attack))
    fig, axes = plt.subplots(len(attacks), 2, figsize=(9, 2.2 + 1.6 * len(attacks)), squeeze=False)
    for i, (a, g) in enumerate(by_form.groupby("attack", sort=False)):
        # ASR on its full range (low = good); ACC within 10 points of the model's ACC before repair
        for j, metric in enumerate(("asr", "acc")):
            before = g[f"{metric}_before"].iloc[0]
            grid = g.pivot_table(index="form", columns="lam", values=metric, sort=False)
            grid = grid.reindex(index=list(dict.fromkeys(list(forms) + [form0])), columns=sorted(set(lams) | {lam0}))
            lim = (0.0, 1.0) if metric == "asr" else (max(0.0, before - 0.1), 1.0)
            sns.heatmap(grid, ax=axes[i, j], vmin=lim[0], vmax=lim[1], cmap="rocket_r" if metric == "asr" else "viridis",
                        annot=True, fmt=".3f", annot_kws={"fontsize": 8}, cbar=True, cbar_kws={"shrink": 0.8})
            axes[i, j].grid(False)
            axes[i, j].set_title(f"{a}: {metric.upper()} after repair (before {before:.3f})", fontsize=9)
            axes[i, j].set_xlabel("lambda")
            axes[i, j].tick_params(axis="y", rotation=0)
    fig.suptitle(f"validation split; default form {form0}, lambda {lam0:g} (blank: not run)\n{title}", fontsize=9)
    fig.tight_layout()
    return fig


def _models(table: Any) -> list[str]:
    return [m for m in MODELS if m in set(table.model)]


def consistency_table(table: Any, attacks: Sequence[str]) -> Any:
    """Flag rates of clean and triggered inputs and the ASR per attack, one column per model the
    detector was fitted on (mean over seeds), from :func:`beniful.ablations.backdoor_consistency` rows."""
    import pandas as pd

    shown = table.assign(model=pd.Categorical(table.model, _models(table)))
    wide = shown.pivot_table(index="attack", columns="model", values=["flag_rate_clean", "flag_rate_triggered", "asr"],
                             sort=False, observed=True)
    wide.columns = [f"{m.replace('flag_rate_', 'flagged ')} ({model})" for m, model in wide.columns]
    return wide.reindex(list(attacks)).reset_index()


def plot_consistency(table: Any, attacks: Sequence[str], title: str = ""):
    """One bar panel per model (clean, backdoored, repaired): the share of clean and of triggered
    inputs the detector flags, with the target FPR as a line (mean over seeds).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    models = _models(table)
    col = palette(["clean", "triggered"])
    names = {"clean": "model trained without poison", "backdoored": "backdoored model",
             "repaired": "after BeniFul elimination"}
    fig, axes = plt.subplots(1, len(models), figsize=(3.8 * len(models), 3.4), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], models):
        part = table[table.model == m].groupby("attack", sort=False).mean(numeric_only=True).reindex(list(attacks))
        xs = range(len(part))
        ax.bar([x - 0.2 for x in xs], part.flag_rate_clean, width=0.4, color=col["clean"], label="clean inputs")
        ax.bar([x + 0.2 for x in xs], part.flag_rate_triggered, width=0.4, color=col["triggered"],
               label="triggered inputs")
        ax.axhline(part.fpr_target.iloc[0], ls=":", color="grey", label="target FPR")
        ax.set_xticks(list(xs), part.index, rotation=30)
        ax.set_ylim(0, 1.02)
        ax.set_title(names[m], fontsize=10)
    axes[0, 0].set_ylabel("share flagged by the detector")
    axes[0, -1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: columns of :func:`consistency_split`, as (source column, shown name)
_SPLIT = (("keeps_class", "clean model keeps the class"), ("flag_rate_triggered", "flagged (all triggered)"),
          ("flag_rate_triggered_kept", "flagged (class kept)"), ("flag_rate_triggered_flipped", "flagged (class flipped)"),
          ("flag_rate_clean", "flagged (clean inputs)"))


def consistency_split(table: Any, attacks: Sequence[str]) -> Any:
    """The model trained without poison: its triggered inputs split by whether the model keeps their
    class, with the detector's flag rate in each part (mean over seeds)."""
    split = table[table.model == "clean"].groupby("attack", sort=False)[[c for c, _ in _SPLIT]].mean()
    split = split.reindex(list(attacks)).reset_index()
    split.columns = ["attack"] + [name for _, name in _SPLIT]
    return split


def plot_consistency_split(split: Any, bound: float, title: str = ""):
    """Bars of :func:`consistency_split` per attack, with the share whose class the model keeps as
    markers and ``bound`` (the clean-model flag bound) as a line.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    xs = range(len(split))
    bars = [("flagged (clean inputs)", "clean inputs"), ("flagged (class kept)", "triggered, class kept"),
            ("flagged (class flipped)", "triggered, class flipped")]
    for k, (c, lab) in enumerate(bars):
        colour = plt.cm.Greys(0.35 + 0.3 * k) if k else palette(["clean"])["clean"]
        ax.bar([x + (k - 1) * 0.27 for x in xs], split[c], width=0.27, label=lab, color=colour)
    ax.plot(list(xs), split["clean model keeps the class"], "kD", ms=5, label="share whose class the model keeps")
    ax.axhline(bound, ls=":", color="grey", label=f"bound ({bound:g})")
    ax.set_xticks(list(xs), split.attack)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of inputs")
    ax.set_title("model trained without poison", fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
