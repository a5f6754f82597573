"""The CSVs ``make smoke`` wrote: every notebook's table present, its rows and columns as the notebook
promises, labelled with the smoke profile and the data set, and every rate a number in [0, 1].

Skipped unless ``$BENIFUL_SMOKE_RESULTS`` names the smoke results tree (``make smoke`` sets it, and
``$BENIFUL_SMOKE_DATASETS`` to the data sets it ran). The expected rows follow each notebook's
default parameters (the smoke run passes only ``profile`` and ``dataset``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from beniful import detectors, profiles
from beniful.ablations import INGREDIENTS
from beniful.notebook import HEADLINE

ROOT = os.environ.get("BENIFUL_SMOKE_RESULTS")
DATASETS = os.environ.get("BENIFUL_SMOKE_DATASETS", "cifar10 tiny-imagenet").split()
pytestmark = pytest.mark.skipif(not ROOT, reason="set BENIFUL_SMOKE_RESULTS to the smoke results tree (make smoke)")

ATTACKS = list(profiles.ATTACK_NAMES)
ADAPTIVE = list(profiles.ADAPTIVE_ATTACK_NAMES)
DETECTORS = list(HEADLINE["detectors"])
ELIMINATORS = list(HEADLINE["eliminators"])
#: table6's cases: every adaptive attack at seed 0, adv_embedding at seeds 0-2 (its default adv_seeds)
TABLE6_CASES = [(a, s) for a in ADAPTIVE for s in ((0, 1, 2) if a == "adv_embedding" else (0,))]
#: fig5's default sweep: 4 weights x (3 BeniFul layers against the attacker at layer3 + the attacker at layer2)
FIG5_POINTS = 4 * (3 + 1)
#: fig4's default sweep sizes: rates, latent sizes, clean fractions, lambdas (WaNet only)
FIG4_POINTS = {"rate": 3, "latent_dim": 5, "clean_fraction": 4, "lam": 3}


@dataclass(frozen=True)
class Expected:
    """What one notebook's CSV must hold.

    Attributes:
        key: columns that identify a row.
        rows: the exact key tuples expected (None: only the row count ``n_rows``).
        rates: columns of rates: non-missing values must lie in [0, 1].
        required: of ``rates`` and others, the columns with no missing value at all.
        n_rows: the row count when ``rows`` is None.
    """

    key: tuple[str, ...]
    rows: list[tuple] | None
    rates: tuple[str, ...]
    required: tuple[str, ...] = ()
    n_rows: int | None = None
    finite: tuple[str, ...] = field(default=())
    seeds: frozenset[int] = frozenset({0})


EXPECTED: dict[str, Expected] = {
    "table1": Expected(("attack",), [("none",)] + [(a,) for a in ATTACKS], ("acc", "asr"), ("acc",)),
    "table2": Expected(("attack", "detector"), [(a, d) for a in ATTACKS for d in DETECTORS],
                       ("auroc", "tpr_at_5fpr", "flag_rate_clean", "flag_rate_triggered", "tpr_calibrated",
                        "fpr_calibrated"),
                       ("auroc", "tpr_at_5fpr", "flag_rate_clean", "flag_rate_triggered", "tpr_calibrated",
                        "fpr_calibrated"), finite=("fit_seconds",)),
    "table3": Expected(("attack", "eliminator"), [(a, e) for a in ATTACKS for e in ELIMINATORS],
                       ("acc", "asr", "acc_before", "asr_before"), ("acc", "asr", "acc_before", "asr_before"),
                       finite=("wall_seconds", "epochs", "steps")),
    # the equal-budget view: FT, FP and NAD at BeniFul-BE's optimisation steps
    "table3_equal_budget": Expected(("attack", "eliminator"), [(a, e) for a in ATTACKS for e in ("ft", "fp", "nad")],
                                    ("acc", "asr", "acc_before", "asr_before"), ("acc", "asr"),
                                    finite=("wall_seconds", "steps")),
    "fig2": Expected(("attack", "signal"), [(a, s) for a in ATTACKS for s in ("r", "c", "both")],
                     ("auroc", "tpr_at_5fpr", "flag_rate_clean", "flag_rate_triggered"), ("auroc",)),
    "fig3": Expected(("attack", "model"), [(a, m) for a in ATTACKS for m in ("backdoored", "clean", "repaired")],
                     ("acc", "asr", "flag_rate_clean", "flag_rate_triggered", "keeps_class", "auroc"),
                     ("acc", "asr", "flag_rate_clean", "flag_rate_triggered", "auroc")),
    "fig4": Expected(("attack", "param"), None, ("auroc", "tpr_at_5fpr", "acc", "asr"),
                     n_rows=sum(FIG4_POINTS.values())),
    "table6": Expected(("attack", "seed", "kind", "method"),
                       [(a, s, "none", "none") for a, s in TABLE6_CASES]
                       + [(a, s, "detector", d) for a, s in TABLE6_CASES for d in DETECTORS + ["autoencoder"]]
                       + [(a, s, "eliminator", e) for a, s in TABLE6_CASES for e in ELIMINATORS],
                       ("acc", "asr", "auroc", "tpr_at_5fpr", "tpr_calibrated", "fpr_calibrated", "acc_before",
                        "asr_before"), seeds=frozenset({0, 1, 2})),
    "fig5": Expected(("weight", "attacker_layer", "detector_layer"), None, ("acc", "asr", "auroc", "tpr_at_5fpr"),
                     ("acc", "asr", "auroc"), n_rows=FIG5_POINTS),
    "table4": Expected(("attack", "ablation"), None,
                       ("auroc", "tpr_at_5fpr", "flag_rate_clean", "flag_rate_triggered", "acc", "asr")),
}


def _read(dataset: str, name: str) -> pd.DataFrame:
    path = Path(ROOT or ".") / "smoke" / dataset / f"{name}.csv"
    assert path.is_file(), f"{name} wrote no table at {path}"
    table = pd.read_csv(path)
    assert len(table), f"{path} is empty"
    return table


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_table(dataset: str, name: str) -> None:
    exp = EXPECTED[name]
    table = _read(dataset, name)
    missing = sorted(set(exp.key + exp.rates + exp.required + exp.finite + ("dataset", "profile", "seed")) - set(table))
    assert not missing, f"{name}: missing columns {missing}"
    assert set(table.profile) == {"smoke"} and set(table.dataset) == {dataset}, \
        f"{name}: rows labelled {sorted(set(table.profile))} / {sorted(set(table.dataset))}"
    assert set(table.seed) == exp.seeds, f"{name}: seeds {sorted(set(table.seed))}, expected {sorted(exp.seeds)}"
    if exp.rows is not None:
        got = sorted(tuple(r) for r in table[list(exp.key)].itertuples(index=False))
        assert got == sorted(exp.rows), f"{name}: rows {got}, expected {sorted(exp.rows)}"
    elif exp.n_rows is not None:
        assert len(table) == exp.n_rows, f"{name}: {len(table)} rows, expected {exp.n_rows}"
    for col in exp.rates:
        vals = pd.to_numeric(table[col], errors="raise").dropna()
        assert vals.between(0, 1).all(), f"{name}.{col} outside [0, 1]: {sorted(vals[~vals.between(0, 1)])[:5]}"
    for col in exp.required:
        assert table[col].notna().all(), f"{name}.{col} has missing values"
    for col in exp.finite:
        assert all(math.isfinite(v) and v >= 0 for v in table[col]), f"{name}.{col} not finite and >= 0"


@pytest.mark.parametrize("dataset", DATASETS)
def test_table5_costs_every_method_from_the_benchmarks(dataset: str) -> None:
    """table5 reads the benchmark CSVs make smoke wrote first: one detection row per registered
    detector (the benchmark costs every one, the autoencoder of table6 too) and plain inference, at
    its defaults, one elimination row per eliminator."""
    table = _read(dataset, "table5")
    assert set(table.profile) == {"smoke"}
    det, elim = table[table.kind == "detection"], table[table.kind == "elimination"]
    assert sorted(det.detector) == sorted(detectors.available() + ["plain"]) and set(det.settings) == {"defaults"}
    assert sorted(elim.eliminator) == sorted(ELIMINATORS)
    assert (det["images/s"] > 0).all() and (elim["wall s"] > 0).all()
    for col in ("acc", "asr", "acc_before", "asr_before"):
        assert elim[col].between(0, 1).all(), col
    for name in ("bench_detection", "bench_elimination"):
        bench = _read(dataset, name)
        assert set(bench.profile) == {"smoke"} and set(bench.dataset) == {dataset}
        assert bench["error"].isna().all(), bench.loc[bench["error"].notna(), "error"].tolist()


@pytest.mark.parametrize("dataset", DATASETS)
def test_fig4_sweeps_every_parameter(dataset: str) -> None:
    counts = _read(dataset, "fig4").groupby("param").size().to_dict()
    assert counts == FIG4_POINTS


@pytest.mark.parametrize("dataset", DATASETS)
def test_table4_has_every_ablation_for_every_attack(dataset: str) -> None:
    table = _read(dataset, "table4")
    layer = table[table.ablation == "signal_layer"]
    assert sorted(set(layer.attack)) == sorted(ATTACKS)
    assert layer.groupby("attack").size().eq(4 * 3).all(), "4 layers x 3 signals per attack"
    frac = table[table.ablation == "clean_fraction"]
    assert frac.groupby("attack").size().eq(3 * 3).all(), "3 clean fractions x 3 signals per attack"
    forms = table[table.ablation == "elimination_form"]
    assert set(forms.attack) == {"wanet"} and len(forms) == 5, "3 loss forms + 2 more lambdas, on WaNet"
    ingredients = table[table.ablation == "elimination_ingredient"]
    assert set(ingredients.attack) == {"wanet"} and set(ingredients.variant) == set(INGREDIENTS), \
        "every ingredient variant of BeniFul-BE, on WaNet"
    assert len(table) == len(layer) + len(frac) + len(forms) + len(ingredients), \
        f"unexpected ablations: {sorted(set(table.ablation))}"
