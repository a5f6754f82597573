"""beniful.notebook.claims: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from beniful import notebook as nb  # noqa: E402


def test_collect_results_orders_quick_first_and_describes_provenance(plant, tmp_path: Path) -> None:
    t1 = pd.DataFrame({"dataset": ["cifar10"], "attack": ["none"], "acc": [0.9], "asr": [float("nan")],
                       "device": ["cuda"], "seed": [0]})
    plant("paper", "cifar10", "table1", t1)
    plant("quick", "mnist5k", "table1", t1.assign(device="cpu", seed=[1]))
    found = nb.collect_results()
    assert [(p, d, n) for p, d, n, _ in found] == [("quick", "mnist5k", "table1"), ("paper", "cifar10", "table1")]
    assert nb.describe_provenance(found[1][3], "paper", "cifar10") == \
        "profile=paper / dataset=cifar10 / device=cuda / seeds=0"

def test_claims_table_checks_the_papers_numbers(plant, tmp_path: Path) -> None:
    empty = nb.claims_table("quick", "mnist5k")
    assert list(empty.columns) == ["claim", "source", "ours (quick, mnist5k)", "holds"]
    assert (empty.iloc[:, 2] == "not measured yet").all()
    # the two numbers that circulate as the paper's are labelled as a third-party summary
    assert (empty.set_index("claim").source.str.contains("third-party summary").sum()) == 3
    t2 = pd.DataFrame({"attack": ["badnets", "blended"] * 2, "detector": ["beniful"] * 2 + ["strip"] * 2,
                       "auroc": [0.99, 0.90, 0.7, 0.8]})
    t3 = pd.DataFrame({"attack": ["badnets", "blended"], "eliminator": ["beniful"] * 2, "acc": [0.97, 0.90],
                       "asr": [0.01, 0.2], "acc_before": [0.98, 0.98], "asr_before": [1.0, 1.0]})
    plant("quick", "mnist5k", "table2", t2)
    plant("quick", "mnist5k", "table3", t3)
    holds = list(nb.claims_table("quick", "mnist5k")["holds"])
    assert holds == ["1/2 attacks", "yes", "1/2 attacks", "1/2 attacks", "–"]
    f3 = pd.DataFrame({"attack": ["badnets", "badnets", "blended"], "model": ["clean", "backdoored", "clean"],
                       "flag_rate_triggered": [0.1, 1.0, 0.9]})
    plant("quick", "mnist5k", "fig3", f3)
    last = nb.claims_table("quick", "mnist5k").iloc[-1]
    assert last["holds"] == "1/2 attacks" and last.iloc[2] == "badnets 0.10, blended 0.90"
    ours = nb.claims_table("quick", "mnist5k").iloc[0, 2]
    assert "badnets 0.990" in ours and "blended 0.900" in ours

def test_claims_table_prefers_the_multi_seed_table_and_shows_std(plant, tmp_path: Path) -> None:
    one = pd.DataFrame({"attack": ["badnets"], "detector": ["beniful"], "auroc": [0.5], "seed": [0]})
    three = pd.DataFrame({"attack": ["badnets"] * 3, "detector": ["beniful"] * 3,
                          "auroc": [0.96, 0.98, 1.0], "seed": [0, 1, 2]})
    plant("quick", "mnist5k", "table2", one)
    plant("quick", "mnist5k", "table2_seeds0-1-2", three)
    ours = nb.claims_table("quick", "mnist5k").iloc[0, 2]
    assert ours == "badnets 0.980 ± 0.016"
    # the baseline comparison still reads every detector of the single-seed table
    both = pd.DataFrame({"attack": ["badnets"] * 2, "detector": ["beniful", "strip"], "auroc": [0.5, 0.9], "seed": [0, 0]})
    plant("quick", "mnist5k", "table2", both)
    row = nb.claims_table("quick", "mnist5k").iloc[1]
    assert row["holds"] == "no (best: strip)"
    plant("quick", "mnist5k", "table2_other", one)  # not a seeds table: ignored
    assert nb.claims_table("quick", "mnist5k").iloc[0, 2] == ours

def test_qualitative_facts_read_the_tables() -> None:
    t2 = pd.DataFrame({"detector": ["strip", "scale_up", "beniful"], "attack": ["badnets"] * 3,
                       "auroc": [0.95, 0.53, 1.0]})
    text = nb.qualitative_detection(t2)
    assert "STRIP detects BadNets (AUROC >= 0.9): yes (AUROC 0.950)" in text
    assert "SCALE-UP detects BadNets (AUROC >= 0.9): no (AUROC 0.530)" in text
    assert "highest mean AUROC over the attacks: yes" in text
    assert "STRIP detects BadNets (AUROC >= 0.9): not measured" in nb.qualitative_detection(t2[t2.detector != "strip"])
    t3 = pd.DataFrame({"eliminator": ["ft", "ft"], "attack": ["badnets", "blended"], "asr": [0.43, 0.9]})
    text = nb.qualitative_elimination(t3)
    assert "FT removes BadNets (ASR <= 0.1): no (ASR after FT 0.430)" in text
    assert "Blended survives FT better than BadNets (higher ASR after FT): yes" in text

def test_describe_provenance_names_the_gpu() -> None:
    df = pd.DataFrame({"device": ["cuda"] * 2, "device_name": ["NVIDIA H200"] * 2, "seed": [0, 1]})
    assert nb.describe_provenance(df, "paper", "mnist5k") == \
        "profile=paper / dataset=mnist5k / device=cuda (NVIDIA H200) / seeds=0,1"
    # a CPU benchmark's processor name is not repeated
    cpu = pd.DataFrame({"device": ["cpu"], "device_name": ["x86_64"], "seed": [0]})
    assert "device=cpu /" in nb.describe_provenance(cpu, "quick", "mnist5k")

def test_setting_note_never_calls_other_data_the_papers_reproduction() -> None:
    assert "not its reproduction" in nb.setting_note("paper", "mnist5k")
    assert "comparable" in nb.setting_note("paper", "cifar10")
    assert "not the paper's numbers" in nb.setting_note("quick", "mnist5k")

def test_headline_comparison_reads_beniful_rows_per_setting(plant, tmp_path: Path) -> None:
    t2 = pd.DataFrame({"attack": ["wanet"] * 3, "detector": ["beniful", "beniful", "strip"],
                       "auroc": [0.98, 0.96, 0.5], "tpr_at_5fpr": [0.9, 0.8, 0.1], "seed": [0, 1, 0]})
    t3 = pd.DataFrame({"attack": ["wanet"], "eliminator": ["beniful"], "acc": [0.95], "asr": [0.01],
                       "acc_before": [0.98], "asr_before": [1.0], "seed": [0]})
    f3 = pd.DataFrame({"attack": ["wanet"] * 2, "model": ["clean", "backdoored"], "flag_rate_triggered": [0.3, 1.0],
                       "seed": [0, 0]})
    plant("quick", "mnist5k", "table2_seeds0-1", t2)
    plant("quick", "mnist5k", "table3", t3)
    plant("quick", "mnist5k", "fig3", f3)
    plant("paper", "mnist5k", "table2", t2[t2.seed == 0].assign(tpr_at_5fpr=1.0))
    plant("paper", "mnist5k", "table2_seed1_wanet", t2.assign(tpr_at_5fpr=0.0))  # not a seeds table
    got = nb.headline_comparison([("quick", "mnist5k"), ("paper", "mnist5k")]).set_index(["profile", "metric"])
    assert got.loc[("quick", "AUROC"), "mean"] == pytest.approx(0.97)
    assert got.loc[("quick", "AUROC"), "std"] == pytest.approx(0.01)
    assert got.loc[("quick", "AUROC"), "seeds"] == "0,1"
    assert got.loc[("quick", "ACC drop of the repair"), "mean"] == pytest.approx(0.03)
    assert got.loc[("quick", "clean model: triggered inputs flagged"), "mean"] == pytest.approx(0.3)
    assert got.loc[("paper", "TPR at 5% FPR"), "mean"] == 1.0
    assert got.loc[("quick", "AUROC"), "source"].startswith("`quick/mnist5k/table2_seeds0-1.csv` (profile=quick")
    assert ("paper", "ASR after repair") not in got.index  # no table3 for that setting: no row
    # the deployed (calibrated) rates are headline metrics where the table has them, skipped where not
    assert ("quick", "TPR at the calibrated threshold (deployed)") not in got.index
    plant("quick", "mnist5k", "table2_seeds0-1", t2.assign(tpr_calibrated=[0.95, 0.85, 0.1], fpr_calibrated=0.04))
    got = nb.headline_comparison([("quick", "mnist5k")]).set_index("metric")
    assert got.loc["TPR at the calibrated threshold (deployed)", "mean"] == pytest.approx(0.9)
    assert got.loc["FPR realised at the calibrated threshold (deployed)", "target"] == 0.10
    assert not got.loc["FPR realised at the calibrated threshold (deployed)", "higher_is_better"]

def test_one_thresholds_table_decides_claims_targets_and_checks(plant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from beniful.notebook import claims

    keys = [t.key for t in nb.THRESHOLDS]
    assert len(keys) == len(set(keys)) and all(t.source for t in nb.THRESHOLDS)
    assert nb.threshold("auroc").source == nb.threshold("asr_drop").source == nb.SUMMARY
    assert not any(t.source.startswith("paper") for t in nb.THRESHOLDS)  # the abstract holds no number
    with pytest.raises(ValueError, match="valid: auroc"):
        nb.threshold("nope")
    plant("quick", "mnist5k", "table2",
           pd.DataFrame({"attack": ["badnets"], "detector": ["beniful"], "auroc": [0.93], "tpr_at_5fpr": [0.8]}))
    assert nb.claims_table("quick", "mnist5k").iloc[0]["holds"] == "yes"
    assert nb.headline_comparison([("quick", "mnist5k")]).set_index("metric").loc["AUROC", "target"] == 0.95
    # move one bound: the claims page, the headline comparison and the qualitative checks all follow it
    monkeypatch.setitem(claims._BY_KEY, "auroc", replace(nb.threshold("auroc"), bound=0.95))
    assert nb.claims_table("quick", "mnist5k").iloc[0]["holds"] == "0/1 attacks"
    monkeypatch.setitem(claims._BY_KEY, "baselines_detect_badnets", replace(nb.threshold("baselines_detect_badnets"), bound=0.5))
    t2 = pd.DataFrame({"detector": ["strip"], "attack": ["badnets"], "auroc": [0.6]})
    assert "STRIP detects BadNets (AUROC >= 0.5): yes" in nb.qualitative_detection(t2)
    assert set(nb.thresholds_table().columns) >= {"key", "bound", "source", "group"}


def test_collect_results_keeps_the_development_log_apart(plant) -> None:
    t1 = pd.DataFrame({"attack": ["none"], "acc": [0.9], "seed": [0]})
    plant("quick", "mnist5k", "table1", t1)
    plant("quick", "mnist5k", "elimination_defaults_labels", t1)
    assert [n for _, _, n, _ in nb.collect_results()] == ["table1"]
    assert [n for _, _, n, _ in nb.collect_results(include_development=True)] == ["elimination_defaults_labels", "table1"]


def test_acc_drop_tolerance_allows_sigs_known_cost_only() -> None:
    """SIG's clean-label poisoning costs BackdoorBench 9 points of ACC (84.5 vs 93.5): table1 accepts
    that much more for SIG and holds every other attack to our 3-point bound."""
    from beniful import profiles
    from beniful.notebook import claims

    assert claims.acc_drop_tolerance("sig") == pytest.approx(0.12)
    for attack in profiles.ATTACK_NAMES:
        if attack != "sig":
            assert claims.acc_drop_tolerance(attack) == claims.ACC_DROP_BOUND == 0.03
    # the sanity floor table1 asserts sits above the target by the same known cost
    assert claims.acc_drop_tolerance("sig", claims.ACC_DROP_FLOOR) == pytest.approx(0.14)
    assert claims.acc_drop_tolerance("badnets", claims.ACC_DROP_FLOOR) == claims.ACC_DROP_FLOOR > claims.ACC_DROP_BOUND


def test_against_baselines_picks_the_strongest_baseline_and_the_pool_control() -> None:
    rows = [("ds", "blended", e, acc, asr) for e, acc, asr in (
        ("beniful", 0.90, 0.02), ("ft", 0.91, 0.60), ("anp", 0.85, 0.10), ("ibau", 0.88, 0.10), ("ft_pool", 0.92, 0.99))]
    rows += [("ds", "badnets", e, acc, asr) for e, acc, asr in (("beniful", 0.90, 0.05), ("ft", 0.90, 0.01))]
    t = pd.DataFrame(rows, columns=["dataset", "attack", "eliminator", "acc", "asr"]).assign(acc_before=0.92)
    out = nb.against_baselines(t).set_index("attack")
    # ANP and I-BAU tie on ASR; I-BAU keeps more ACC, so it is the strongest; ft_pool is a control, not a baseline
    assert out.loc["blended", "strongest baseline"] == "ibau" and out.loc["blended", "vs strongest"] == "lower ASR"
    assert out.loc["blended", "vs ft_pool"] == "lower ASR" and abs(out.loc["blended", "ft_pool asr"] - 0.99) < 1e-12
    assert out.loc["badnets", "vs strongest"] == "higher ASR" and out.loc["badnets", "strongest baseline"] == "ft"
    assert out.loc["badnets", "ft_pool asr"] != out.loc["badnets", "ft_pool asr"]  # NaN: no control ran
    assert abs(out.loc["blended", "beniful acc drop"] - 0.02) < 1e-12
