"""beniful.notebook.tables: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

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


def test_repo_root_results_root_and_display_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = nb.repo_root(Path(nb.__file__).parent.parent)
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
    [path] = nb.write_table(df, run, "table1")
    assert path == tmp_path / "results" / "quick" / "mnist5k" / "table1.csv"
    back = pd.read_csv(path)
    assert list(back.columns[:7]) == ["dataset", "attack", "acc", "asr", "profile", "device", "seed"]
    assert "torch_version" in back.columns

def test_write_table_splits_a_two_dataset_table_by_dataset(tmp_path: Path) -> None:
    run = nb.setup(dataset="mnist5k,fashion-mnist", load_data=False, plot_style=False)
    assert run.datasets == ["mnist5k", "fashion-mnist"]
    assert run.cases() == [("mnist5k", 0), ("fashion-mnist", 0)]
    rows = [{"attack": "badnets", "auroc": v, **run.columns(0, ds)} for ds, v in (("mnist5k", 0.9), ("fashion-mnist", 0.7))]
    paths = nb.write_table(pd.DataFrame(rows), run, "table2")
    assert paths == [tmp_path / "results" / "quick" / ds / "table2.csv" for ds in run.datasets]
    assert [list(pd.read_csv(p).auroc) for p in paths] == [[0.9], [0.7]]
    assert nb.display_path(paths) == "table2.csv, table2.csv"  # outside a checkout: the names
    with pytest.raises(ValueError, match="no 'dataset' column"):
        nb.write_table(pd.DataFrame({"attack": ["badnets"]}), run, "table2")
    with pytest.raises(ValueError, match="cifar10"):
        nb.write_table(pd.DataFrame({"dataset": ["cifar10"]}), run, "table2")
    with pytest.raises(ValueError, match="not part of this run"):
        run.zoo_kwargs(0, "cifar10")


def test_show_table_formats_percent_and_escapes() -> None:
    html = nb.show_table(pd.DataFrame({"attack": ["<b>"], "acc": [0.9876], "asr": [float("nan")]}),
                         percent=["acc", "asr"], caption="cap").data
    assert "98.8" in html and "0.9876" not in html and "–" in html
    assert "&lt;b&gt;" in html and "<em>cap</em>" in html

def test_sanitize_removes_addresses_and_kernel_paths() -> None:
    text = "<Foo object at 0x7f00deadbeef> in /tmp/ipykernel_1234/567.py line 3"
    assert nb.sanitize(text) == "<Foo object> in <cell> line 3"

def test_multi_seed_runs_write_beside_the_single_seed_table(tmp_path: Path) -> None:
    run = nb.setup(seed=[0, 1, 2], load_data=False, plot_style=False)
    assert nb.table_name(run, "table2") == "table2_seeds0-1-2"
    df = pd.DataFrame({"attack": ["badnets"], "auroc": [0.9], "seed": [0]})
    [path] = nb.write_table(df, run, "table2")
    assert path.name == "table2_seeds0-1-2.csv"
    single = nb.setup(seed=0, load_data=False, plot_style=False)
    assert [p.name for p in nb.write_table(df, single, "table2")] == ["table2.csv"]
    assert nb.table_name(nb.setup(seed=1, load_data=False, plot_style=False), "t") == "t_seeds1"

def test_seed_table_shows_mean_and_std_over_seeds() -> None:
    df = pd.DataFrame({"attack": ["a", "a", "b", "b"], "detector": ["x"] * 4, "auroc": [0.9, 1.0, 0.5, 0.5],
                       "seed": [0, 1, 0, 1]})
    wide = nb.seed_table(df, "attack", "detector", ["auroc"])
    assert list(wide.columns) == ["attack", "auroc x"]
    assert list(wide["auroc x"]) == ["95.0 ± 5.0", "50.0 ± 0.0"]
    one = nb.seed_table(df[df.seed == 0], "attack", "detector", ["auroc"])
    assert list(one["auroc x"]) == ["90.0", "50.0"]
