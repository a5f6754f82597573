"""The one resolver for the data, results and cache roots (beniful.paths)."""
from __future__ import annotations

from pathlib import Path

import pytest

from beniful import cache, datasets, paths, results

ROOTS = [("data", paths.data_root, "BENIFUL_DATA", "data"),
         ("results", paths.results_root, "BENIFUL_RESULTS", "results"),
         ("cache", paths.cache_root, "BENIFUL_CACHE", ".cache")]


@pytest.mark.parametrize("what, resolve, var, sub", ROOTS)
def test_explicit_root_then_env_then_checkout(what, resolve, var, sub, tmp_path, monkeypatch):
    monkeypatch.setenv(var, str(tmp_path / "env"))
    assert resolve(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve() == tmp_path / "env"
    monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # outside the checkout: still found through the package's own folder
    assert resolve() == paths.repo_root() / sub


def test_every_module_uses_the_same_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("BENIFUL_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path / "c"))
    assert datasets.data_root() == tmp_path / "d"
    assert results.results_dir("quick", "mnist5k") == tmp_path / "r" / "quick" / "mnist5k"
    assert cache.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_repo_root_is_none_outside_a_checkout(tmp_path):
    assert paths.repo_root(tmp_path) is None
    assert paths.repo_root(Path(paths.__file__).parent) == Path(paths.__file__).resolve().parent.parent


def test_display_path_is_relative_to_the_checkout(tmp_path):
    root = paths.repo_root()
    assert paths.display_path(root / "results" / "x.csv") == "results/x.csv"
    assert paths.display_path(tmp_path / "y.csv") == "y.csv"
