"""beniful.notebook.budgets: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from beniful import datasets  # noqa: E402
from beniful import notebook as nb  # noqa: E402


def test_ablation_sweeps_fit_fewer_vae_epochs_on_quick_only_and_a_user_value_wins() -> None:
    """table4's 25 sweep detectors run at 40 VAE epochs on the quick profile (the headline detectors
    keep the method's 100); the paper profile and a notebook override are not cut."""
    from beniful.detectors.beniful import BeniFulDetector

    assert nb.method_params("quick", "detectors", ["beniful"]) == {"beniful": {"cache": True}}
    assert BeniFulDetector().vae_epochs == 100
    quick = nb.method_params("quick", "ablation sweeps", ["beniful"])["beniful"]
    assert quick == {"cache": True, "vae_epochs": 40}
    assert nb.method_params("paper", "ablation sweeps", ["beniful"])["beniful"] == {"cache": True}
    mine = nb.method_params("quick", "ablation sweeps", ["beniful"], {"beniful": {"vae_epochs": 100}})
    assert mine["beniful"]["vae_epochs"] == 100

def test_method_params_apply_the_quick_budget_only_to_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(nb.QUICK_BUDGET, "detectors", {"strip": {"n_overlays": 20, "alpha": 1.0}})
    quick = nb.method_params("quick", "detectors", ["beniful", "strip"], {"strip": {"n_overlays": 50}})
    assert quick == {"beniful": {"cache": True}, "strip": {"n_overlays": 50, "alpha": 1.0}}
    assert nb.method_params("paper", "detectors", ["strip"]) == {"strip": {}}
    # the notebooks' defaults apply to every profile; nested detector_kwargs are merged, not replaced
    assert nb.method_params("paper", "detectors", ["beniful"]) == {"beniful": {"cache": True}}
    monkeypatch.setitem(nb.QUICK_BUDGET, "eliminators", {"beniful": {"detector_kwargs": {"vae_epochs": 40}}})
    elim = nb.method_params("quick", "eliminators", ["beniful"], {"beniful": {"detector_kwargs": {"latent_dim": 8}}})
    assert elim == {"beniful": {"detector_kwargs": {"cache": True, "vae_epochs": 40, "latent_dim": 8}}}
    with pytest.raises(ValueError, match="not run: teco"):
        nb.method_params("quick", "detectors", ["strip"], {"teco": {}})
    assert nb.kwargs_note(quick) == "non-default parameters: beniful(cache=True); strip(n_overlays=50, alpha=1.0)"
    assert nb.kwargs_note({"ft": {}}) == "non-default parameters: none"

def test_detection_budget_and_stratified_test_subset() -> None:
    assert nb.detection_test_images("quick") == nb.QUICK_DETECTION_TEST_IMAGES
    assert nb.detection_test_images("paper") is None
    assert nb.detection_test_images("paper", 100) == 100
    for bad in (5, 2.5, True, "all"):
        with pytest.raises(ValueError, match="n_test"):
            nb.detection_test_images("quick", bad)
    from beniful.zoo import TrainedModel

    test = datasets.ImageDataset(torch.zeros(100, 1, 4, 4, dtype=torch.uint8), torch.arange(100) % 10, "toy")
    tm = TrainedModel(model=nn.Identity(), attack=None, test=test, clean=test, train=test, labels={"profile": "quick"})
    small = nb.test_subset(tm, 40)
    assert len(small.test) == 40 and len(tm.test) == 100 and small.train is tm.train
    assert torch.bincount(small.test.targets).tolist() == [4] * 10
    assert nb.test_subset(tm, None) is tm and nb.test_subset(tm, 500) is tm


def test_each_profile_has_its_own_budget_by_name() -> None:
    """One table keyed by profile name: smoke cuts every slow loop, quick keeps its own, paper none."""
    assert nb.BUDGETS["quick"] is nb.QUICK_BUDGET and nb.BUDGETS["smoke"] is nb.SMOKE_BUDGET
    smoke = nb.method_params("Smoke", "eliminators", list(nb.HEADLINE["eliminators"]))
    assert smoke["anp"]["iterations"] < nb.QUICK_BUDGET["eliminators"]["anp"]["iterations"]
    assert smoke["beniful"]["detector_kwargs"] == {"cache": True, "vae_epochs": 2}
    assert nb.method_params("smoke", "detectors", ["strip"])["strip"]["n_overlays"] < 20
    assert nb.budget("paper", "detectors") == {} and nb.budget("unregistered", "detectors") == {}
    assert nb.detection_test_images("smoke") == nb.DETECTION_TEST_IMAGES["smoke"] < nb.QUICK_DETECTION_TEST_IMAGES
    assert nb.detection_test_images("paper") is None


def test_panel_leaves_out_only_what_the_profile_names_on_that_data_set() -> None:
    elims = nb.choose("eliminators")
    for ds, left in nb.LEFT_OUT["quick"]["eliminators"].items():
        kept = nb.panel("quick", "eliminators", elims, ds)
        assert kept == [e for e in elims if e not in left] and "beniful" in kept
    assert nb.panel("quick", "eliminators", elims, "fashion-mnist") == elims
    # a named list runs everywhere, and profiles without an entry run everything
    assert nb.panel("quick", "eliminators", elims, "mnist5k", named=True) == elims
    assert nb.panel("paper", "eliminators", elims, "mnist5k") == elims


def test_ablation_datasets_default_to_the_benchmark_only_when_unnamed() -> None:
    assert nb.ablation_datasets("quick", "mnist5k") == "mnist5k"
    assert nb.ablation_datasets("paper") is None and nb.ablation_datasets("smoke") is None
    on_disk, _ = nb.run.resolve_datasets("quick")
    expected = [d for d in nb.ABLATION_DATASETS["quick"] if d in on_disk] or None
    assert nb.ablation_datasets("quick") == expected
