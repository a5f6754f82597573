"""beniful.notebook.ablation_figures: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from beniful import notebook as nb  # noqa: E402


def _by_layer(attacks_: list[str], layers: list[str]) -> pd.DataFrame:
    rows = [{"attack": a, "layer": la, "signal": s, "auroc": 0.5 + 0.1 * i, "tpr_at_5fpr": 0.1 * i, "seed": 0}
            for a in attacks_ for i, la in enumerate(layers) for s in ("r", "c", "both")]
    return pd.DataFrame(rows)

def test_ablation_tables_pivot_in_the_given_order() -> None:
    by_layer = _by_layer(["wanet", "badnets"], ["layer2", "layer3"])
    wide = nb.layer_signal_table(by_layer, "auroc", ["layer3", "layer2"], ["badnets", "wanet"])
    assert list(wide.columns) == ["attack", "layer3 r", "layer3 c", "layer3 both", "layer2 r", "layer2 c", "layer2 both"]
    assert list(wide.attack) == ["badnets", "wanet"] and wide.loc[0, "layer3 both"] == pytest.approx(0.6)
    frac = by_layer[by_layer.layer == "layer3"].assign(clean_fraction=0.05)
    frac = pd.concat([frac, frac.assign(clean_fraction=0.01, auroc=0.55)])
    tab = nb.clean_fraction_table(frac, ["badnets", "wanet"])
    assert list(tab.columns) == ["attack", "auroc @0.01", "auroc @0.05", "tpr_at_5fpr @0.01", "tpr_at_5fpr @0.05"]
    fig = nb.plot_layer_ablation(by_layer, frac, ["layer2", "layer3"], ["badnets", "wanet"], [0.01, 0.05], "layer3")
    assert len(fig.axes) >= 3

def test_consistency_tables_and_figures_follow_the_models_present() -> None:
    rows = []
    for m in ("backdoored", "clean"):
        for a in ("badnets", "sig"):
            rows.append({"model": m, "attack": a, "flag_rate_clean": 0.05, "flag_rate_triggered": 0.9 if m != "clean" else 0.1,
                         "asr": 1.0, "fpr_target": 0.05, "keeps_class": 0.8, "flag_rate_triggered_kept": 0.05,
                         "flag_rate_triggered_flipped": 0.3, "seed": 0})
    table = pd.DataFrame(rows)
    wide = nb.consistency_table(table, ["sig", "badnets"])
    assert list(wide.attack) == ["sig", "badnets"]
    assert "flagged triggered (clean)" in wide.columns and "flagged triggered (backdoored)" in wide.columns
    assert not any("repaired" in c for c in wide.columns)
    assert len(nb.plot_consistency(table, ["badnets", "sig"]).axes) == 2  # one panel per model present
    split = nb.consistency_split(table, ["badnets", "sig"])
    assert list(split.columns)[:2] == ["attack", "clean model keeps the class"]
    assert split["flagged (all triggered)"].tolist() == [0.1, 0.1]
    nb.plot_consistency_split(split, nb.threshold("clean_model_flags").bound)
