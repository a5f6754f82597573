"""Smoke tests of benchmarks/ (issue 6): each main() runs on a tiny model and writes its CSV.

No timing is asserted. What is asserted: the CSV's columns, one row per method, the baseline's
ratio of 1, the forward passes counted by hooks, and that a failing method is recorded as an
error row without stopping the others.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beniful import detectors, eliminators  # noqa: E402
from beniful.detectors.base import Detector  # noqa: E402
from beniful.eliminators.base import Eliminator  # noqa: E402
from beniful.zoo import TrainedModel  # noqa: E402

from benchmarks import _common, bench_detection, bench_elimination, bench_training  # noqa: E402

torch.set_num_threads(1)

DETECTION_COLUMNS = {"profile", "dataset", "device", "device_name", "threads", "repeats", "seed", "attack", "detector",
                     "batch_size", "n_images", "seconds", "images_per_second", "ratio_vs_plain", "forward_passes",
                     "measured_passes_first_layer", "measured_passes_last_layer", "fit_seconds", "error",
                     "beniful_version", "torch_version"}
ELIMINATION_COLUMNS = {"profile", "dataset", "device", "device_name", "attack", "eliminator", "wall_seconds",
                       "ratio_vs_ft", "acc", "asr", "acc_before", "asr_before", "error", "beniful_version"}
TRAINING_COLUMNS = {"profile", "dataset", "device", "device_name", "data_source", "path", "width", "batch_size",
                    "n_images", "seconds_per_epoch", "images_per_second", "ratio_vs_plain",
                    "minutes_100_epochs_full_size", "data_images_per_second", "data_ratio_vs_plain", "workers", "error",
                    "beniful_version"}


@pytest.fixture(scope="module")
def tiny_tm(tiny_badnets_tm: TrainedModel) -> TrainedModel:
    """The shared tiny BadNets model (tests/conftest.py)."""
    return tiny_badnets_tm


def _common_args(tmp_path: Path) -> list[str]:
    return ["--quick", "--device", "cpu", "--results-dir", str(tmp_path)]


def _read(tmp_path: Path, dataset: str, name: str, profile: str = "quick") -> pd.DataFrame:
    path = tmp_path / profile / dataset / f"{name}.csv"
    assert path.is_file(), f"{path} not written"
    df = pd.read_csv(path)
    df["error"] = ["" if pd.isna(v) else str(v) for v in df["error"]]
    return df


# ---------------------------------------------------------------------------------------------
# detection

class _ThreePass(Detector):
    """Runs the model three times per input: the pass counter must see 3."""

    name = "three_pass"
    forward_passes = 3.0

    def _score(self, x: Tensor) -> Tensor:
        return sum(self.model(x * s).softmax(1).amax(1) for s in (1.0, 0.9, 0.8))


class _Broken(Detector):
    name = "broken"

    def _score(self, x: Tensor) -> Tensor:
        raise RuntimeError("boom")


def test_bench_detection_counts_passes_and_records_errors(tiny_tm, tmp_path, monkeypatch) -> None:
    fakes = {"three_pass": _ThreePass, "broken": _Broken}
    monkeypatch.setattr(detectors, "available", lambda: sorted(fakes))
    monkeypatch.setattr(detectors, "build", lambda name, **kw: fakes[name](**kw))
    args = _common_args(tmp_path) + ["--n", "48", "--batch-size", "16", "--min-time", "0.05"]
    df = bench_detection.main(args, tm=tiny_tm)
    csv = _read(tmp_path, "mnist5k", "bench_detection")
    assert DETECTION_COLUMNS <= set(csv.columns)
    assert list(csv["detector"]) == ["plain", "broken", "three_pass"]
    rows = csv.set_index("detector")
    assert rows.loc["plain", "ratio_vs_plain"] == pytest.approx(1.0)
    assert rows.loc["plain", "measured_passes_first_layer"] == pytest.approx(1.0)
    assert rows.loc["three_pass", "measured_passes_first_layer"] == pytest.approx(3.0)
    assert rows.loc["three_pass", "measured_passes_last_layer"] == pytest.approx(3.0)
    assert rows.loc["three_pass", "forward_passes"] == pytest.approx(3.0)
    assert rows.loc["three_pass", "images_per_second"] > 0 and rows.loc["three_pass", "error"] == ""
    assert "boom" in rows.loc["broken", "error"]
    assert len(df) == 3


def test_bench_detection_runs_every_registered_detector(tiny_tm, tmp_path) -> None:
    names = detectors.available()
    df = bench_detection.main(_common_args(tmp_path) + ["--n", "8", "--batch-size", "8"], tm=tiny_tm)
    assert list(dict.fromkeys(df["detector"])) == ["plain", *names]
    assert DETECTION_COLUMNS <= set(_read(tmp_path, "mnist5k", "bench_detection").columns)
    failed = {r.detector: r.error for r in df.itertuples() if r.error}
    assert not failed, f"detectors failed in the benchmark: {failed}"
    assert (df["images_per_second"] > 0).all()


# ---------------------------------------------------------------------------------------------
# elimination

class _FakeFT(Eliminator):
    name = "ft"

    def _repair(self, model, x, y, pool):
        return model


class _BrokenElim(Eliminator):
    name = "broken"

    def _repair(self, model, x, y, pool):
        raise ValueError("nope")


def test_bench_elimination_ratio_vs_ft_and_errors(tiny_tm, tmp_path, monkeypatch) -> None:
    fakes = {"ft": _FakeFT, "broken": _BrokenElim}
    monkeypatch.setattr(eliminators, "available", lambda: sorted(fakes))
    monkeypatch.setattr(eliminators, "build", lambda name, **kw: fakes[name](**kw))
    bench_elimination.main(_common_args(tmp_path), tm=tiny_tm)
    csv = _read(tmp_path, "mnist5k", "bench_elimination")
    assert ELIMINATION_COLUMNS <= set(csv.columns)
    rows = csv.set_index("eliminator")
    assert rows.loc["ft", "ratio_vs_ft"] == pytest.approx(1.0)
    assert rows.loc["ft", "wall_seconds"] > 0
    # the identity "repair" leaves ACC/ASR as they were
    assert rows.loc["ft", "acc"] == pytest.approx(rows.loc["ft", "acc_before"])
    assert "nope" in rows.loc["broken", "error"]


def test_bench_elimination_runs_every_registered_eliminator(tiny_tm, tmp_path) -> None:
    names = eliminators.available()
    df = bench_elimination.main(_common_args(tmp_path) + ["--epochs", "1"], tm=tiny_tm)
    assert list(df["eliminator"]) == names
    failed = {r.eliminator: r.error for r in df.itertuples() if r.error}
    assert not failed, f"eliminators failed in the benchmark: {failed}"
    assert (df["wall_seconds"] > 0).all()


# ---------------------------------------------------------------------------------------------
# training

def test_bench_training_synthetic_smoke(tmp_path) -> None:
    df = bench_training.main(_common_args(tmp_path) + ["--synthetic", "cifar10", "--n", "48", "--width", "2",
                                                       "--epochs", "2", "--batch-size", "16"])
    csv = _read(tmp_path, "cifar10", "bench_training", profile="paper")  # --synthetic defaults to paper
    assert TRAINING_COLUMNS <= set(csv.columns)
    assert list(csv["path"]) == ["fast", "plain_dataloader_w0"]
    assert (csv["data_source"] == "synthetic").all() and (csv["n_images"] == 48).all()
    assert (csv["timed_epochs"] == 1).all(), "the first (warm-up) epoch of a 2-epoch run is left out"
    assert csv.set_index("path").loc["plain_dataloader_w0", "ratio_vs_plain"] == pytest.approx(1.0)
    assert (df["images_per_second"] > 0).all() and (csv["error"] == "").all()


def test_bench_training_rejects_bad_paths(tmp_path) -> None:
    with pytest.raises(ValueError, match="--paths"):
        bench_training.main(_common_args(tmp_path) + ["--paths", "turbo", "--n", "8"])


# ---------------------------------------------------------------------------------------------
# shared helpers

def test_parse_params_and_select() -> None:
    assert _common.parse_params(["strip.n=100", "beniful.layer=layer2", "strip.alpha=0.5"]) == {
        "strip": {"n": 100, "alpha": 0.5}, "beniful": {"layer": "layer2"}}
    with pytest.raises(ValueError, match="METHOD.KEY=VALUE"):
        _common.parse_params(["n=100"])
    assert _common.select("strip, SCALE-UP", ["scale_up", "strip"], "detector") == ["strip", "scale_up"]
    with pytest.raises(ValueError, match="registered: scale_up, strip"):
        _common.select("nope", ["scale_up", "strip"], "detector")
    assert _common.rotate([1, 2, 3], 4) == [2, 3, 1]


def test_accepts_follows_kwargs_forwarding_only() -> None:
    class Base:
        def __init__(self, epochs: int = 1, seed: int = 0) -> None: ...

    class Forwards(Base):
        def __init__(self, n: int = 3, **kwargs) -> None:
            super().__init__(**kwargs)

    class Closed(Base):
        def __init__(self, iterations: int = 5, seed: int = 0) -> None:
            super().__init__(epochs=0, seed=seed)

    assert _common.accepts(Forwards, "n") and _common.accepts(Forwards, "epochs")
    assert _common.accepts(Closed, "iterations") and not _common.accepts(Closed, "epochs")
    table = {"*": {"epochs": 1}, "closed": {"iterations": 2, "missing": 0}}
    assert _common.smoke_overrides("closed", Closed, table) == {"iterations": 2}
    assert _common.smoke_overrides("forwards", Forwards, table) == {"epochs": 1}


def test_detection_variants_and_acceptance_use_paper_settings() -> None:
    from argparse import Namespace

    budget = {"strip": {"n_overlays": 20}}
    full = Namespace(quick=False, no_budget=False)
    assert bench_detection.variants("strip", budget, full) == [("defaults", {}), ("budget", {"n_overlays": 20})]
    assert bench_detection.variants("beniful", budget, full) == [("defaults", {})]
    assert bench_detection.variants("strip", budget, Namespace(quick=True, no_budget=False)) == [
        ("budget", {"n_overlays": 20})]
    assert bench_detection.variants("strip", budget, Namespace(quick=False, no_budget=True)) == [("defaults", {})]
    df = pd.DataFrame({"detector": ["plain", "beniful", "strip", "strip", "scale_up"],
                       "settings": ["defaults", "defaults", "defaults", "budget", "defaults"],
                       "images_per_second": [120.0, 100.0, 1.5, 6.0, 25.0]})
    # STRIP is judged at its paper N (1.5 images/s: 67x), not the budgeted 6 images/s (17x)
    assert bench_detection.acceptance(df) == {"plain": True, "scale_up": False, "strip": True}


# ---------------------------------------------------------------------------------------------
# the device check (benchmarks/gpu_check.py): its plumbing on the CPU with the tiny model

def test_gpu_check_names_bad_steps() -> None:
    from benchmarks import gpu_check

    with pytest.raises(ValueError, match=r"unknown steps \['bogus'\]; valid steps: fig3, table3, table2"):
        gpu_check.main(["--profile", "quick", "--steps", "table2,bogus", "--device", "cpu"])


def test_gpu_check_writes_each_table_with_the_devices_name(tiny_tm, tmp_path, monkeypatch) -> None:
    from benchmarks import gpu_check

    monkeypatch.setattr(gpu_check.zoo, "get", lambda *a, **k: tiny_tm)  # no model training in a unit test
    gpu_check.main(["--profile", "quick", "--attacks", "badnets", "--detectors", "strip", "--steps", "table2",
                    "--device", "cpu", "--out", str(tmp_path)])
    models = pd.read_csv(tmp_path / "gpu_check_models.csv")
    assert list(models.attack) == ["none", "badnets"] and set(models.device_name) == {"cpu"}
    t2 = pd.read_csv(tmp_path / "table2.csv")
    assert list(t2.detector) == ["strip"] and t2.auroc.between(0, 1).all()
    assert {"profile", "device", "seed", "device_name", "n_test"} <= set(t2.columns)
    assert not (tmp_path / "fig3.csv").exists()  # only the steps asked for
    # another seed writes beside seed 0's tables, never over them
    gpu_check.main(["--profile", "quick", "--attacks", "badnets", "--detectors", "strip", "--steps", "table2",
                    "--device", "cpu", "--out", str(tmp_path), "--seed", "1"])
    assert (tmp_path / "table2_seeds1.csv").is_file()
    assert list(pd.read_csv(tmp_path / "table2.csv").seed) == [0]
