"""beniful.notebook.params: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")


from beniful import attacks, detectors, eliminators  # noqa: E402
from beniful import notebook as nb  # noqa: E402


def test_parameter_table_reads_the_code() -> None:
    for kind, reg in (("attacks", attacks), ("detectors", detectors), ("eliminators", eliminators)):
        tab = nb.parameter_table(kind)
        assert list(tab.iloc[:, 0]) == reg.available()
    tab = nb.parameter_table("attacks").set_index("attack")
    assert "patch_size=3" in tab.loc["badnets", "parameters (defaults)"]
    assert "seed=" not in tab.loc["badnets", "parameters (defaults)"]
    assert nb.default_of("attacks", "blended", "alpha") == attacks.ATTACKS.get("blended")().alpha
    assert nb.default_of("attacks", "not_there", "alpha") == "–"


def test_paper_settings_table_lists_each_setting_with_its_value_here() -> None:
    from beniful.paper_settings import PAPER_SETTINGS

    tab = nb.paper_settings_table(200)
    assert len(tab) == len(PAPER_SETTINGS) and tab.source.str.len().min() > 20
    anp = tab[(tab.method == "anp") & (tab.param == "iterations")].iloc[0]
    assert (anp.paper, anp.value, anp.paper_images, anp.rule) == ("2000", "800", 500, "x n_clean / 500")
    assert tab[tab.method == "ft"].iloc[0].default == repr(eliminators.ELIMINATORS.get("ft")().epochs)


def test_per_dataset_reads_one_value_or_a_mapping() -> None:
    assert nb.per_dataset(0.6, "fashion-mnist", 0.75) == 0.6
    bounds = {"mnist5k": 0.75, "fashion-mnist": 0.60}
    assert nb.per_dataset(bounds, "fashion-mnist", 0.9) == 0.60
    assert nb.per_dataset(bounds, "cifar10", 0.9) == 0.9
