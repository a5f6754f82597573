"""Configuration that the two README commands depend on: pins, book config, Makefile paths."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line!r}"
            out[name.lower()] = version
    return out


def test_environment_yml_carries_the_requirements_pins() -> None:
    req = _pins((ROOT / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == req


def test_book_config_builds_offline_from_stored_outputs() -> None:
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    for pat in (".venv", "venv", "_build", "**.ipynb_checkpoints"):
        assert pat in cfg["exclude_patterns"]
    assert any("mathjax" in e and "offline" in e for e in cfg["sphinx"]["extra_extensions"])


def test_pytest_does_not_collect_build_or_run_copies() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    line = next(l for l in text.splitlines() if l.startswith("norecursedirs"))
    for d in ("_build", ".ipynb_checkpoints", ".venv", "runs"):
        assert f'"{d}"' in line


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("args, out_dir, params", [
    ([], "notebooks/table1.ipynb", ""),
    (["PROFILE=paper", "DATASET=cifar10"], "notebooks/runs/paper_cifar10/table1.ipynb", "-p profile paper -p dataset cifar10"),
    (["PROFILE=paper"], "notebooks/runs/paper_default/table1.ipynb", "-p profile paper"),
    (["SEEDS=0,1,2"], "notebooks/runs/quick_default_seeds0-1-2/table1.ipynb", "-p profile quick  -p seed 0,1,2"),
])
def test_make_reproduce_writes_quick_in_place_and_other_profiles_beside(args: list[str], out_dir: str, params: str) -> None:
    dry = subprocess.run(["make", "-n", "-B", "notebooks", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    line = next(l for l in dry.splitlines() if "papermill notebooks/table1.ipynb" in l and "--cwd" in l)
    assert re.search(rf"papermill notebooks/table1.ipynb \S*{re.escape(out_dir)}\b", line), line
    assert "--cwd notebooks" in line
    if params:
        assert params in line
    else:
        assert " -p " not in line
    assert "BENIFUL_CACHE" not in line  # exported, not per-command
    env = subprocess.run(["make", "-n", "-p", "notebooks", *args], cwd=ROOT, capture_output=True, text=True).stdout
    assert f"BENIFUL_CACHE := {ROOT}/.cache" in env


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("args, jobs, threads", [([], "-j2", "BENIFUL_NUM_THREADS=1"), (["JOBS=1"], "-j1", None)])
def test_make_notebooks_runs_table1_first_then_the_rest_in_parallel(args: list[str], jobs: str, threads: str | None) -> None:
    """table1 trains the models every other notebook loads, so it runs alone; the rest run JOBS at a
    time with one torch thread each (two one-thread kernels beat one two-thread kernel on 2 cores)."""
    dry = subprocess.run(["make", "-n", "-B", "notebooks", *args], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    runs = [re.search(r"papermill notebooks/(\w+)\.ipynb", l).group(1) for l in dry.splitlines()
            if "papermill notebooks/" in l and "--cwd" in l]
    nbs = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert runs[0] == "table1" and sorted(runs) == nbs and runs.index("fig3") < runs.index("table3")
    sub = next(l for l in dry.splitlines() if "ORDERED=1" in l)
    assert jobs in sub
    assert (threads in sub) if threads else "BENIFUL_NUM_THREADS" not in sub


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_ci_lints_with_the_pinned_ruff(tmp_path: Path) -> None:
    """CI runs `make lint`, which runs the venv's ruff (pinned like every other tool) with the rules
    in pyproject.toml; a lint step that CI never calls would rot unnoticed."""
    assert "ruff" in _pins((ROOT / "requirements.txt").read_text().splitlines())
    steps = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines() if l.strip().startswith("make ")]
    assert "make lint" in steps
    # a stamp outside the checkout: `make -n` only prints the install recipe (never name a makefile
    # here: make runs the recipes that remake makefiles even under -n)
    dry = subprocess.run(["make", "-n", "lint", f"STAMP={tmp_path / 'stamp'}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert ".venv/bin/ruff check ." in dry
    text = (ROOT / "pyproject.toml").read_text()
    assert "[tool.ruff.lint]" in text and re.search(r"^select = \[", text, flags=re.M)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_smoke_runs_every_notebook_on_both_shapes_outside_the_committed_trees(tmp_path: Path) -> None:
    """`make test` runs `make smoke`: data written from the digits, every notebook on the smoke profile
    for CIFAR-10 (and Tiny ImageNet with SMOKE_DATASETS) into notebooks/runs/smoke_<dataset>/ with data
    and CSVs under .cache/smoke/ (never results/), then the CSV check with the results folder named."""
    default = subprocess.run(["make", "-n", "-B", "test", f"STAMP={tmp_path / 'stamp'}"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert "notebooks/runs/smoke_cifar10/" in default and "smoke_tiny-imagenet" not in default  # CI's time
    dry = subprocess.run(["make", "-n", "-B", "test", f"STAMP={tmp_path / 'stamp'}", "SMOKE_DATASETS=cifar10 tiny-imagenet"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    smoke = ROOT / ".cache" / "smoke"
    assert f"tests/support/smoke_data.py {smoke}/data" in dry
    nbs = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    for ds in ("cifar10", "tiny-imagenet"):
        ran = sorted(re.search(r"papermill notebooks/(\w+)\.ipynb", l).group(1) for l in dry.splitlines()
                     if f"notebooks/runs/smoke_{ds}/" in l and "--cwd" in l)
        assert ran == nbs, (ds, ran)
        assert f"-p profile smoke -p dataset {ds}" in dry
        for bench in ("bench_detection", "bench_elimination"):  # table5 reads them
            assert f"benchmarks/{bench}.py --profile smoke --dataset {ds} --quick" in dry
    assert f"BENIFUL_DATA={smoke}/data" in dry and f"BENIFUL_RESULTS={smoke}/results" in dry
    assert re.search(rf"BENIFUL_SMOKE_RESULTS={re.escape(str(smoke))}/results .*pytest -q tests/smoke", dry.replace("\\\n", ""))
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert "notebooks/runs" in cfg["exclude_patterns"]  # executed run copies never become book pages


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_table6_prefetch_runs_the_adaptive_attacks_from_the_other_end() -> None:
    """table6's default attacks are the adaptive ones, not the headline set the prefetch kernel
    would otherwise reverse: its second kernel must run the same cases, or it shares no work."""
    dry = subprocess.run(["make", "-n", "-B", "prefetch-table6"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "papermill notebooks/table6.ipynb" in dry
    cmd = re.search(r'"\$\((.*)\)"', dry).group(1).replace(".venv/bin/python", sys.executable)
    params = json.loads(subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    assert params["attacks"] == ["adv_embedding", "adaptive_patch", "adaptive_blend"]
