"""beniful.notebook.run: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations


import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from beniful import attacks, datasets, detectors, eliminators, profiles  # noqa: E402
from beniful import notebook as nb  # noqa: E402


def test_setup_defaults_give_quick_profile_and_provenance() -> None:
    run = nb.setup(load_data=False, plot_style=False)
    assert run.profile == "quick" and run.dataset == profiles.get("quick").default_dataset
    assert run.seeds == [0] and run.device.type in ("cpu", "cuda")
    assert run.attacks == [a for a in profiles.ATTACK_NAMES if a in attacks.available()]
    assert run.provenance == f"profile=quick / dataset=mnist5k / device={run.device.type} / seeds=0"
    assert run.columns() == {"dataset": "mnist5k", "profile": "quick", "device": run.device.type, "seed": 0}

@pytest.mark.parametrize("kwargs, needle", [
    ({"profile": "papr"}, "valid profiles: paper, quick, smoke"),
    ({"dataset": "cifar100"}, "valid names: cifar10, fashion-mnist, mnist5k, tiny-imagenet"),
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
    run = nb.setup(dataset="mnist5k", attacks="badnets, wanet", seed=[2, 1], plot_style=False)
    assert run.attacks == ["badnets", "wanet"] and run.seeds == [2, 1] and run.seed == 2
    assert run.datasets == ["mnist5k"]  # named alone: the profile's other data sets are not added
    train, test = run.data["mnist5k"]
    assert (len(train), len(test)) == (4000, 1000)
    kw = run.zoo_kwargs(seed=1)
    assert kw["data"] is run.data["mnist5k"] and kw["seed"] == 1 and kw["profile"] == "quick" and kw["dataset"] == "mnist5k"
    assert "seeds=2,1" in run.provenance

def test_setup_cuts_the_data_to_the_profile_and_exposes_its_quality_gate() -> None:
    """The smoke profile's run holds its capped, stratified share of the data; zoo cuts nothing more."""
    run = nb.setup(profile="smoke", dataset="mnist5k", plot_style=False)
    caps = profiles.get("smoke").data_sizes["mnist5k"]
    train, test = run.data["mnist5k"]
    assert (len(train), len(test)) == (caps["train"], caps["test"])
    assert train.targets.bincount().tolist() == [caps["train"] // 10] * 10
    assert profiles.get("smoke").subset_data("mnist5k", train, test) == (train, test)
    assert not run.quality_checks and nb.setup(load_data=False, plot_style=False).quality_checks

def test_default_datasets_skip_a_missing_one_and_say_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick profile runs mnist5k and Fashion-MNIST side by side; without Fashion-MNIST on disk it
    runs mnist5k alone and names both ways to add the other (the verified download, the Debian package)."""
    from beniful import builtin_datasets

    assert profiles.get("quick").datasets == ("mnist5k", "fashion-mnist")
    monkeypatch.setattr(builtin_datasets, "FASHION_SYSTEM_DIR", builtin_datasets.Path("/nonexistent/fashion"))
    run = nb.setup(attacks="badnets", plot_style=False)
    assert run.datasets == ["mnist5k"] and list(run.data) == ["mnist5k"]
    note = run.missing_note()
    assert note.startswith("not run: fashion-mnist") and "download_fashion_mnist.py" in note
    assert "apt-get install dataset-fashion-mnist" in note
    with pytest.raises(datasets.DatasetNotFoundError):  # named explicitly, a missing data set is an error
        nb.setup(dataset="mnist5k,fashion-mnist", plot_style=False)


def test_seed_accepts_comma_string_and_numpy_ints() -> None:
    assert nb.setup(seed="0, 3", load_data=False, plot_style=False).seeds == [0, 3]
    assert nb.setup(seed=np.int64(4), load_data=False, plot_style=False).seeds == [4]

def test_choose_defaults_to_the_headline_set_in_table_order() -> None:
    for kind, reg in (("attacks", attacks), ("detectors", detectors), ("eliminators", eliminators)):
        chosen = nb.choose(kind)
        assert chosen == list(nb.HEADLINE[kind]) and set(chosen) <= set(reg.available())
    name = attacks.available()[0]
    assert nb.choose("attacks", [name, name.upper()]) == [name]  # case-folded, deduplicated
    with pytest.raises(ValueError, match="valid kinds"):
        nb.choose("defenses")

def test_set_threads_reads_the_variable_and_rejects_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BENIFUL_NUM_THREADS", raising=False)
    assert nb.set_threads() is None
    before = torch.get_num_threads()
    monkeypatch.setenv("BENIFUL_NUM_THREADS", "1")
    try:
        assert nb.set_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    monkeypatch.setenv("BENIFUL_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="'two'"):
        nb.set_threads()
