"""beniful.grid: the plan mirrors ``make reproduce`` / ``make smoke`` (same notebooks, parameters,
folders and benchmark options), settings merge in the documented order, and a rerun skips what is
done and retries what failed."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from beniful import cache, grid, profiles, zoo
from beniful.executors import Resources, Task

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def test_smoke_plan_has_every_model_notebook_and_the_book(tmp_path):
    tasks = grid.plan("smoke", ["cifar10"], log_dir=tmp_path, phases=("models", "notebooks", "book"))
    models = [t.name for t in tasks["models"]]
    assert models == [f"model/cifar10/{a}/seed0" for a in ["none", *profiles.ATTACK_NAMES]]
    nbs = tasks["notebooks"]
    assert [t.name.split("/")[-1] for t in nbs][0] == "table1"
    assert sorted(t.name.split("/")[-1] for t in nbs) == NOTEBOOKS
    argv = nbs[0].argv
    assert argv[1:5] == ["-m", "papermill", "notebooks/table1.ipynb", "notebooks/runs/smoke_cifar10/table1.ipynb"]
    assert argv[-6:] == ["-p", "profile", "smoke", "-p", "dataset", "cifar10"]
    assert [t.name for t in tasks["book"]] == ["book"] and tasks["benchmarks"] == []
    assert all(t.env["BENIFUL_CACHE"] == str(cache.cache_dir().resolve()) for t in tasks["models"])


def test_run_folders_and_parameters_follow_the_makefile():
    assert grid.run_dir("quick", None, None) == "notebooks"  # the committed notebooks, in place
    assert grid.run_dir("quick", "fashion-mnist", None) == "notebooks/runs/quick_fashion-mnist"
    assert grid.run_dir("paper", None, [0, 1, 2]) == "notebooks/runs/paper_default_seeds0-1-2"
    quick = grid.plan("quick", phases=("notebooks",))["notebooks"][0]
    assert quick.argv[4] == "notebooks/table1.ipynb" and "-p" not in quick.argv
    seeded = grid.plan("quick", ["mnist5k"], [0, 1], phases=("notebooks", "models"))
    assert seeded["notebooks"][0].argv[-3:] == ["-p", "seed", "0,1"]
    assert {t.name.rsplit("/", 1)[1] for t in seeded["models"]} == {"seed0", "seed1"}


def test_benchmark_options_are_the_ones_make_smoke_uses():
    make = (ROOT / "Makefile").read_text()
    for t in grid.plan("smoke", ["cifar10"], phases=("benchmarks",))["benchmarks"]:
        script = Path(t.argv[1]).name
        line = next(ln for ln in make.splitlines() if script in ln)
        expected = re.search(rf"{script} (.*?)(?: >|$)", line).group(1).replace("$*", "cifar10").split()
        assert t.argv[2:] == expected


def test_unknown_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match="valid: benchmarks, models, notebooks, book"):
        grid.plan(phases=("train",))
    with pytest.raises(ValueError, match="valid: table1"):
        grid.plan(only=["table9"], phases=("notebooks",))
    with pytest.raises(ValueError, match="cifar10"):
        grid.plan(dataset=["cifar100"])


def test_settings_merge_defaults_config_phase_table_and_command_line():
    config = {"partition": "gpu", "gpus": 1, "sbatch": {"account": "lab"}, "models": {"time_min": 600},
              "notebooks": {"cpus_per_task": 4}}
    res = grid.resources(config, {"cpus_per_task": 8, "time_min": None})
    assert res["models"] == Resources(partition="gpu", gpus=1, cpus_per_task=8, time_min=600, sbatch={"account": "lab"})
    assert res["notebooks"].cpus_per_task == 8 and res["notebooks"].time_min == Resources().time_min
    assert res["book"].gpus == 0
    with pytest.raises(ValueError, match=r"'gpu_count' in \[models\]; valid: array_parallelism"):
        grid.resources({"models": {"gpu_count": 1}}, {})


def test_a_cached_model_counts_as_done(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    task = grid.plan("quick", ["mnist5k"], attacks=["badnets"], phases=("models",))["models"][1]
    assert task.name == "model/mnist5k/badnets/seed0" and not grid.is_done(task)
    cache.save(zoo.model_key("badnets", "mnist5k", "quick", 0), {"x": torch.zeros(1)}, {})
    assert grid.is_done(task)


def test_a_rerun_skips_done_work_and_retries_failures(tmp_path, monkeypatch, capsys):
    flag = tmp_path / "fixed"
    counter = tmp_path / "runs.txt"
    code = (f"import os, sys; open({str(counter)!r}, 'a').write(sys.argv[1]); "
            f"sys.exit(0 if sys.argv[1] == 'a' or os.path.exists({str(flag)!r}) else 1)")

    def fake_plan(*args, **kwargs):
        out = {p: [] for p in grid.PHASES}
        out["notebooks"] = [Task(f"notebook/{n}", "notebooks", [sys.executable, "-c", code, n],
                                 stamp=str(tmp_path / "stamps" / n)) for n in "ab"]
        return out

    monkeypatch.setattr(grid, "plan", fake_plan)
    first = grid.run("local", log_dir=tmp_path / "grid", poll_s=0)
    assert first == {"done": 1, "failed": 1, "skipped": 0}
    assert "[FAILED] notebook/b" in capsys.readouterr().out
    flag.touch()
    second = grid.run("local", log_dir=tmp_path / "grid", poll_s=0)
    assert second == {"done": 1, "failed": 0, "skipped": 1}
    assert counter.read_text() == "abb"
    assert grid.main(["--executor", "local", "--log-dir", str(tmp_path / "grid"), "--poll", "0"]) == 0
    assert counter.read_text() == "abb"  # everything done: nothing runs
