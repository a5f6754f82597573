"""table5's cost helpers: they read the benchmarks' CSVs and compute ratios, never time anything."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd
import pytest

from beniful import costs


def _det(strip_ips: float = 2.0) -> pd.DataFrame:
    rows = [("plain", "defaults", 1000.0, 1), ("beniful", "defaults", 800.0, 1.3), ("scale_up", "defaults", 100.0, 6),
            ("strip", "defaults", strip_ips, 100), ("strip", "budget", 10.0, 20), ("teco", "defaults", 5.0, 56)]
    return pd.DataFrame([{"profile": "quick", "dataset": "mnist5k", "device": "cpu", "device_name": "X (2 cores)",
                          "threads": 1, "repeats": 3, "seed": 0, "attack": "badnets", "detector": d, "settings": s,
                          "images_per_second": ips, "forward_passes": fp, "measured_passes_first_layer": fp,
                          "measured_passes_last_layer": fp, "error": None, "torch_version": "2"}
                         for d, s, ips, fp in rows])


def test_detection_costs_ratios_and_paper_column():
    t = costs.detection_costs(_det())
    assert list(t.detector)[:2] == ["plain", "beniful"]          # paper order, defaults before budget
    strip = t[t.detector == "strip"]
    assert list(strip.settings) == ["defaults", "budget"]
    row = t[(t.detector == "scale_up")].iloc[0]
    assert row["ratio vs plain"] == pytest.approx(0.1) and row["beniful speed-up"] == pytest.approx(8.0)
    assert row["passes (paper)"] == "6"
    assert t[t.detector == "teco"].iloc[0]["paper_high"] == 76


@pytest.mark.parametrize("strip_ips, passed", [(2.0, True), (100.0, False)])
def test_acceptance_uses_paper_settings_rows(strip_ips, passed):
    acc = costs.acceptance(costs.detection_costs(_det(strip_ips))).set_index("versus")
    assert acc.loc["plain", "passed"] and acc.loc["plain", "measured"] == pytest.approx(0.8)
    assert acc.loc["scale_up", "passed"]
    # the budget row (10 images/s, 80x) must not stand in for STRIP's paper setting
    assert bool(acc.loc["strip", "passed"]) is passed
    assert acc.loc["strip", "measured"] == pytest.approx(800.0 / strip_ips)


def test_acceptance_without_paper_settings_row_raises():
    df = _det()
    df = df[~((df.detector == "strip") & (df.settings == "defaults"))]
    with pytest.raises(ValueError, match="strip"):
        costs.acceptance(costs.detection_costs(df))


def test_elimination_costs_ratio_vs_ft():
    df = pd.DataFrame({"eliminator": ["ft", "beniful", "anp"], "settings": ["budget"] * 3,
                       "wall_seconds": [10.0, 30.0, 80.0], "acc": [0.9, 0.95, 0.9], "asr": [0.4, 0.0, 1.0]})
    t = costs.elimination_costs(df)
    assert list(t.eliminator) == ["beniful", "ft", "anp"]
    assert list(t["ratio vs FT"]) == pytest.approx([3.0, 1.0, 8.0])
    assert list(t.asr) == [0.0, 0.4, 1.0]


def test_load_bench_missing_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmarks/bench_detection.py --profile quick --dataset mnist5k"):
        costs.load_bench("bench_detection", "quick", "mnist5k", root=tmp_path)
    assert costs.load_bench("bench_elimination", "paper", "cifar10", root=tmp_path, missing_ok=True) is None
    assert "bench_elimination.py --profile paper --dataset cifar10" in costs.missing_note("bench_elimination", "paper", "cifar10")
    with pytest.raises(ValueError, match="bench_detection"):
        costs.bench_path("bench_typo", "quick", "mnist5k", root=tmp_path)


def test_load_bench_drops_error_rows_and_provenance(tmp_path):
    df = _det()
    df.loc[len(df)] = {**df.iloc[0].to_dict(), "detector": "ibd_psc", "images_per_second": float("nan"), "error": "boom"}
    p = tmp_path / "quick" / "mnist5k"
    p.mkdir(parents=True)
    df.to_csv(p / "bench_detection.csv", index=False)
    got = costs.load_bench("bench_detection", "quick", "mnist5k", root=tmp_path)
    assert "ibd_psc" not in set(got.detector) and len(got) == 6
    assert costs.command("bench_detection", got) == (
        "python benchmarks/bench_detection.py --profile quick --dataset mnist5k --device cpu --repeats 3 --threads 1")
    line = costs.bench_provenance(got)
    assert "device=cpu (X (2 cores))" in line and "threads=1" in line and "repeats=3" in line


def test_plot_costs_has_log_axes():
    det = costs.detection_costs(_det())
    elim = costs.elimination_costs(pd.DataFrame({"eliminator": ["ft"], "settings": ["budget"], "wall_seconds": [1.0]}))
    fig = costs.plot_costs(det, elim, {"beniful": (0, 0, 1)}, "t")
    assert len(fig.axes) == 3 and all(ax.get_xscale() == "log" for ax in fig.axes)
