"""beniful.notebook: parameter validation before any work, provenance, paths, features, figures, book helpers.

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from beniful import attacks, datasets, detectors, eliminators, models, profiles  # noqa: E402
from beniful import notebook as nb  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results and data roots in a temporary folder; never the checkout's."""
    monkeypatch.setenv("BENIFUL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path / "data"))


# ------------------------------------------------------------------------------ parameters
def test_setup_defaults_give_quick_profile_and_provenance() -> None:
    run = nb.setup(load_data=False, plot_style=False)
    assert run.profile == "quick" and run.dataset == profiles.get("quick").default_dataset
    assert run.seeds == [0] and run.device.type in ("cpu", "cuda")
    assert run.attacks == [a for a in profiles.ATTACK_NAMES if a in attacks.available()]
    assert run.provenance == f"profile=quick / dataset=mnist5k / device={run.device.type} / seeds=0"
    assert run.columns() == {"profile": "quick", "device": run.device.type, "seed": 0}


@pytest.mark.parametrize("kwargs, needle", [
    ({"profile": "papr"}, "valid profiles: paper, quick"),
    ({"dataset": "cifar100"}, "valid names: cifar10, mnist5k, tiny-imagenet"),
    ({"attacks": ["badnets", "badnet"]}, "valid names: " + ", ".join(attacks.available())),
    ({"attacks": "blended,nope"}, "'nope'"),
    ({"attacks": []}, "empty"),
    ({"attacks": 3}, "list of names"),
    ({"seed": -1}, "non-negative integer"),
    ({"seed": "x"}, "non-negative integer"),
    ({"seed": [0, 1.5]}, "non-negative integer"),
    ({"seed": True}, "non-negative integer"),
    ({"device": "tpu"}, "'auto', 'cpu' or 'cuda"),
])
def test_setup_rejects_bad_parameters_with_valid_values(kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError) as err:
        nb.setup(load_data=False, plot_style=False, **kwargs)
    assert needle in str(err.value)


def test_setup_fails_fast_naming_the_download_command_when_data_is_missing() -> None:
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        nb.setup(profile="paper", dataset="cifar10", plot_style=False)
    assert "data_scripts/download_cifar10.py" in str(err.value)


def test_setup_loads_data_once_and_zoo_kwargs_pass_it_on() -> None:
    run = nb.setup(attacks="badnets, wanet", seed=[2, 1], plot_style=False)
    assert run.attacks == ["badnets", "wanet"] and run.seeds == [2, 1] and run.seed == 2
    train, test = run.data
    assert (len(train), len(test)) == (4000, 1000)
    kw = run.zoo_kwargs(seed=1)
    assert kw["data"] is run.data and kw["seed"] == 1 and kw["profile"] == "quick" and kw["dataset"] == "mnist5k"
    assert "seeds=2,1" in run.provenance


def test_seed_accepts_comma_string_and_numpy_ints() -> None:
    assert nb.setup(seed="0, 3", load_data=False, plot_style=False).seeds == [0, 3]
    assert nb.setup(seed=np.int64(4), load_data=False, plot_style=False).seeds == [4]


def test_choose_and_pending_follow_the_registries() -> None:
    for kind, reg in (("attacks", attacks), ("detectors", detectors), ("eliminators", eliminators)):
        chosen = nb.choose(kind)
        assert chosen == [n for n in nb.PLANNED[kind] if n in reg.available()]
        assert set(chosen).isdisjoint(nb.pending(kind))
        assert set(chosen) | set(nb.pending(kind)) == set(nb.PLANNED[kind])
    name = attacks.available()[0]
    assert nb.choose("attacks", [name, name.upper()]) == [name]  # case-folded, deduplicated
    with pytest.raises(ValueError, match="valid kinds"):
        nb.choose("defenses")


def test_pending_note_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(nb.PLANNED, "detectors", ("beniful", "not_yet_written"))
    note = nb.pending_note("detectors", ["beniful"])
    assert note == "detectors: beniful; still to come: not_yet_written"
    assert nb.pending_note("detectors", []).startswith("detectors: (none yet)")


# ------------------------------------------------------------------------------ paths and tables
def test_repo_root_results_root_and_display_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = nb.repo_root(Path(nb.__file__).parent)
    assert root is not None and (root / "pyproject.toml").is_file()
    assert nb.repo_root(tmp_path) is None
    assert nb.results_root() == tmp_path / "results"
    monkeypatch.delenv("BENIFUL_RESULTS")
    monkeypatch.chdir(root / "beniful")
    assert nb.results_root() == root / "results"  # from a subfolder (papermill --cwd notebooks)
    assert nb.display_path(root / "results" / "quick" / "x.csv") == "results/quick/x.csv"
    assert nb.display_path(tmp_path / "elsewhere" / "t.csv") == "t.csv"


def test_write_table_goes_to_profile_dataset_name(tmp_path: Path) -> None:
    run = nb.setup(load_data=False, plot_style=False)
    df = pd.DataFrame({"dataset": ["mnist5k"], "attack": ["badnets"], "acc": [0.9], "asr": [1.0], **run.columns()})
    path = nb.write_table(df, run, "table1")
    assert path == tmp_path / "results" / "quick" / "mnist5k" / "table1.csv"
    back = pd.read_csv(path)
    assert list(back.columns[:7]) == ["dataset", "attack", "acc", "asr", "profile", "device", "seed"]
    assert "torch_version" in back.columns


def test_show_table_formats_percent_and_escapes() -> None:
    html = nb.show_table(pd.DataFrame({"attack": ["<b>"], "acc": [0.9876], "asr": [float("nan")]}),
                         percent=["acc", "asr"], caption="cap").data
    assert "98.8" in html and "0.9876" not in html and "–" in html
    assert "&lt;b&gt;" in html and "<em>cap</em>" in html


def test_sanitize_removes_addresses_and_kernel_paths() -> None:
    text = "<Foo object at 0x7f00deadbeef> in /tmp/ipykernel_1234/567.py line 3"
    assert nb.sanitize(text) == "<Foo object> in <cell> line 3"


# ------------------------------------------------------------------------------ features and figures
def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return models.build("preact_resnet18", num_classes=10, in_channels=1, width=4).eval()


def test_layer_features_match_a_manual_hook_and_leave_mode() -> None:
    model = _tiny_model()
    x = torch.rand(5, 1, 28, 28)
    got = nb.layer_features(model, x, "layer2", batch_size=2)
    store = []
    h = model.layer2.register_forward_hook(lambda m, i, o: store.append(o))
    with torch.no_grad():
        model(x)
    h.remove()
    assert torch.allclose(got, store[0].flatten(1), atol=1e-5)
    pooled = nb.layer_features(model, x, "layer2", pool=True)
    assert torch.allclose(pooled, store[0].mean(dim=(2, 3)), atol=1e-5)
    model.train()
    nb.layer_features(model, x, "layer1")
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="unknown layer"):
        nb.layer_features(model, x, "layer9")


def test_pca_shares_axes_and_separation_ranks_clouds() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=g)
    far = torch.randn(200, 6, generator=g) + 5.0
    near = torch.randn(200, 6, generator=g)
    pa, pf = nb.pca_2d(a, far)
    assert pa.shape == (200, 2) and pf.shape == (200, 2)
    _, pn = nb.pca_2d(a, near)
    assert nb.separation(pa, pf) > 3.0
    assert nb.separation(*nb.pca_2d(a, near)) < 0.5
    assert nb.separation(pa, pa) == 0.0


def test_palette_is_stable_and_colour_blind() -> None:
    import seaborn as sns

    base = sns.color_palette("colorblind", 10)
    p1 = nb.palette(["strip", "beniful"])
    p2 = nb.palette(["beniful", "teco", "scale_up", "ibd_psc", "strip"])
    assert p1["beniful"] == p2["beniful"] == base[0]
    assert p1["strip"] == p2["strip"]
    assert len(set(p2.values())) == 5  # distinct within one figure
    assert all(c in base for c in p2.values())


def _fake_tm(attack: str | None, model: nn.Module, test: datasets.ImageDataset) -> SimpleNamespace:
    atk = attacks.build(attack, seed=0) if attack else None
    if atk is not None:
        atk.setup(test.shape)
    return SimpleNamespace(model=model, attack=atk, test=test)


def test_figures_draw_one_panel_per_cell() -> None:
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(0)
    test = datasets.ImageDataset((torch.rand(40, 1, 28, 28, generator=g) * 255).to(torch.uint8),
                                 torch.arange(40) % 10, "toy")
    model = _tiny_model()
    tms = {"none": _fake_tm(None, model, test), "badnets": _fake_tm("badnets", model, test),
           "blended": _fake_tm("blended", model, test)}
    fig = nb.plot_trigger_grid(tms, n=3)
    assert len(fig.axes) == 3 * 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1].startswith("badnets → ") and titles[0].startswith("clean ")
    plt.close(fig)
    pts = {(a, l): (np.zeros((4, 2)), np.ones((4, 2))) for a in ("badnets", "sig") for l in ("layer1", "layer3")}
    fig = nb.plot_feature_pca(pts, ["badnets", "sig"], ["layer1", "layer3"])
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "layer1"
    plt.close(fig)
    df = pd.DataFrame({"attack": ["a", "a", "b", "b"], "detector": ["beniful", "strip"] * 2, "auroc": [0.9, 0.5, 1.0, 0.6]})
    ax = nb.plot_metric_bars(df, "auroc", hue="detector")
    assert len(ax.patches) >= 4 and ax.get_ylabel() == "auroc"
    plt.close("all")


# ------------------------------------------------------------------------------ book helpers
def _plant(tmp_path: Path, profile: str, dataset: str, name: str, df: pd.DataFrame) -> None:
    d = tmp_path / "results" / profile / dataset
    d.mkdir(parents=True, exist_ok=True)
    df.to_csv(d / f"{name}.csv", index=False)


def test_collect_results_orders_quick_first_and_describes_provenance(tmp_path: Path) -> None:
    t1 = pd.DataFrame({"dataset": ["cifar10"], "attack": ["none"], "acc": [0.9], "asr": [float("nan")],
                       "device": ["cuda"], "seed": [0]})
    _plant(tmp_path, "paper", "cifar10", "table1", t1)
    _plant(tmp_path, "quick", "mnist5k", "table1", t1.assign(device="cpu", seed=[1]))
    found = nb.collect_results()
    assert [(p, d, n) for p, d, n, _ in found] == [("quick", "mnist5k", "table1"), ("paper", "cifar10", "table1")]
    assert nb.describe_provenance(found[1][3], "paper", "cifar10") == \
        "profile=paper / dataset=cifar10 / device=cuda / seeds=0"


def test_claims_table_checks_the_papers_numbers(tmp_path: Path) -> None:
    empty = nb.claims_table("quick", "mnist5k")
    assert (empty.iloc[:, 1] == "not measured yet").all()
    t2 = pd.DataFrame({"attack": ["badnets", "blended"] * 2, "detector": ["beniful"] * 2 + ["strip"] * 2,
                       "auroc": [0.99, 0.90, 0.7, 0.8]})
    t3 = pd.DataFrame({"attack": ["badnets", "blended"], "eliminator": ["beniful"] * 2, "acc": [0.97, 0.90],
                       "asr": [0.01, 0.2], "acc_before": [0.98, 0.98], "asr_before": [1.0, 1.0]})
    _plant(tmp_path, "quick", "mnist5k", "table2", t2)
    _plant(tmp_path, "quick", "mnist5k", "table3", t3)
    holds = list(nb.claims_table("quick", "mnist5k")["holds"])
    assert holds == ["1/2 attacks", "yes", "1/2 attacks", "1/2 attacks", "–"]
    f3 = pd.DataFrame({"attack": ["badnets", "badnets", "blended"], "model": ["clean", "backdoored", "clean"],
                       "flag_rate_triggered": [0.1, 1.0, 0.9]})
    _plant(tmp_path, "quick", "mnist5k", "fig3", f3)
    last = nb.claims_table("quick", "mnist5k").iloc[-1]
    assert last["holds"] == "1/2 attacks" and last.iloc[1] == "badnets 0.10, blended 0.90"
    ours = nb.claims_table("quick", "mnist5k").iloc[0, 1]
    assert "badnets 0.990" in ours and "blended 0.900" in ours


def test_parameter_table_reads_the_code() -> None:
    for kind, reg in (("attacks", attacks), ("detectors", detectors), ("eliminators", eliminators)):
        tab = nb.parameter_table(kind)
        assert list(tab.iloc[:, 0]) == reg.available()
    tab = nb.parameter_table("attacks").set_index("attack")
    assert "patch_size=3" in tab.loc["badnets", "parameters (defaults)"]
    assert "seed=" not in tab.loc["badnets", "parameters (defaults)"]
    assert nb.default_of("attacks", "blended", "alpha") == attacks.ATTACKS.get("blended")().alpha
    assert nb.default_of("attacks", "not_there", "alpha") == "–"


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
    tm = TrainedModel(nn.Identity(), None, "toy", test, test, torch.zeros(0, dtype=torch.long), {}, {}, "k", "quick", 0)
    small = nb.test_subset(tm, 40)
    assert len(small.test) == 40 and len(tm.test) == 100 and small.train is tm.train
    assert torch.bincount(small.test.targets).tolist() == [4] * 10
    assert nb.test_subset(tm, None) is tm and nb.test_subset(tm, 500) is tm


def test_multi_seed_runs_write_beside_the_single_seed_table(tmp_path: Path) -> None:
    run = nb.setup(seed=[0, 1, 2], load_data=False, plot_style=False)
    assert nb.table_name(run, "table2") == "table2_seeds0-1-2"
    df = pd.DataFrame({"attack": ["badnets"], "auroc": [0.9], "seed": [0]})
    path = nb.write_table(df, run, "table2")
    assert path.name == "table2_seeds0-1-2.csv"
    single = nb.setup(seed=0, load_data=False, plot_style=False)
    assert nb.write_table(df, single, "table2").name == "table2.csv"
    assert nb.table_name(nb.setup(seed=1, load_data=False, plot_style=False), "t") == "t_seeds1"


def test_claims_table_prefers_the_multi_seed_table_and_shows_std(tmp_path: Path) -> None:
    one = pd.DataFrame({"attack": ["badnets"], "detector": ["beniful"], "auroc": [0.5], "seed": [0]})
    three = pd.DataFrame({"attack": ["badnets"] * 3, "detector": ["beniful"] * 3,
                          "auroc": [0.96, 0.98, 1.0], "seed": [0, 1, 2]})
    _plant(tmp_path, "quick", "mnist5k", "table2", one)
    _plant(tmp_path, "quick", "mnist5k", "table2_seeds0-1-2", three)
    ours = nb.claims_table("quick", "mnist5k").iloc[0, 1]
    assert ours == "badnets 0.980 ± 0.016"
    # the baseline comparison still reads every detector of the single-seed table
    both = pd.DataFrame({"attack": ["badnets"] * 2, "detector": ["beniful", "strip"], "auroc": [0.5, 0.9], "seed": [0, 0]})
    _plant(tmp_path, "quick", "mnist5k", "table2", both)
    row = nb.claims_table("quick", "mnist5k").iloc[1]
    assert row["holds"] == "no (best: strip)"
    _plant(tmp_path, "quick", "mnist5k", "table2_other", one)  # not a seeds table: ignored
    assert nb.claims_table("quick", "mnist5k").iloc[0, 1] == ours


def test_seed_table_shows_mean_and_std_over_seeds() -> None:
    df = pd.DataFrame({"attack": ["a", "a", "b", "b"], "detector": ["x"] * 4, "auroc": [0.9, 1.0, 0.5, 0.5],
                       "seed": [0, 1, 0, 1]})
    wide = nb.seed_table(df, "attack", "detector", ["auroc"])
    assert list(wide.columns) == ["attack", "auroc x"]
    assert list(wide["auroc x"]) == ["95.0 ± 5.0", "50.0 ± 0.0"]
    one = nb.seed_table(df[df.seed == 0], "attack", "detector", ["auroc"])
    assert list(one["auroc x"]) == ["90.0", "50.0"]


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


def test_headline_comparison_reads_beniful_rows_per_setting(tmp_path: Path) -> None:
    t2 = pd.DataFrame({"attack": ["wanet"] * 3, "detector": ["beniful", "beniful", "strip"],
                       "auroc": [0.98, 0.96, 0.5], "tpr_at_5fpr": [0.9, 0.8, 0.1], "seed": [0, 1, 0]})
    t3 = pd.DataFrame({"attack": ["wanet"], "eliminator": ["beniful"], "acc": [0.95], "asr": [0.01],
                       "acc_before": [0.98], "asr_before": [1.0], "seed": [0]})
    f3 = pd.DataFrame({"attack": ["wanet"] * 2, "model": ["clean", "backdoored"], "flag_rate_triggered": [0.3, 1.0],
                       "seed": [0, 0]})
    _plant(tmp_path, "quick", "mnist5k", "table2_seeds0-1", t2)
    _plant(tmp_path, "quick", "mnist5k", "table3", t3)
    _plant(tmp_path, "quick", "mnist5k", "fig3", f3)
    _plant(tmp_path, "paper", "mnist5k", "table2", t2[t2.seed == 0].assign(tpr_at_5fpr=1.0))
    _plant(tmp_path, "paper", "mnist5k", "table2_seed1_wanet", t2.assign(tpr_at_5fpr=0.0))  # not a seeds table
    got = nb.headline_comparison([("quick", "mnist5k"), ("paper", "mnist5k")]).set_index(["profile", "metric"])
    assert got.loc[("quick", "AUROC"), "mean"] == pytest.approx(0.97)
    assert got.loc[("quick", "AUROC"), "std"] == pytest.approx(0.01)
    assert got.loc[("quick", "AUROC"), "seeds"] == "0,1"
    assert got.loc[("quick", "ACC drop of the repair"), "mean"] == pytest.approx(0.03)
    assert got.loc[("quick", "clean model: triggered inputs flagged"), "mean"] == pytest.approx(0.3)
    assert got.loc[("paper", "TPR at 5% FPR"), "mean"] == 1.0
    assert got.loc[("quick", "AUROC"), "source"].startswith("`quick/mnist5k/table2_seeds0-1.csv` (profile=quick")
    assert ("paper", "ASR after repair") not in got.index  # no table3 for that setting: no row
