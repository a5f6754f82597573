"""The paper grid as jobs: train every model, run every notebook, build the book, locally or on SLURM.

``python -m beniful.grid --executor slurm --profile paper --dataset cifar10,tiny-imagenet --seeds 0,1,2``
(or ``make reproduce EXECUTOR=slurm``) plans the grid in phases and hands each phase to an executor
(:mod:`beniful.executors`):

1. ``models``: every model the notebooks share, data set x attack x seed plus the clean model, as one
   job array (one GPU per task with ``--gpus 1``). Each task is ``python -m beniful.grid train ...``,
   which trains exactly what table1 loads (``beniful.notebook.setup`` + :func:`beniful.zoo.get`).
2. ``notebooks``: each notebook of ``notebooks/`` per data set, with papermill and the same parameters
   and output folder as ``make reproduce``, as jobs that wait for phase 1. Models a notebook alone needs
   (fig4's poisoning-rate sweep) are trained there, under the cache's entry locks.
3. ``book``: the book's own notebooks, then ``jupyter-book build -W -n --keep-going .``, after every
   notebook succeeded.

With ``--benchmarks`` a phase 0 runs the two benchmarks ``make smoke`` runs before its notebooks
(table5 reads them). Every job shares one cache (:mod:`beniful.locks`: each entry is computed once),
which therefore must be on a file system all the nodes see.

A rerun skips what is done (a model in the cache, a job whose stamp file exists) and runs again what
failed; ``--force`` reruns the notebooks and the book. The cluster settings come from a TOML file
(``--config``; keys as :class:`beniful.executors.Resources`, with optional ``[models]``,
``[notebooks]``, ``[benchmarks]`` and ``[book]`` tables overriding them for one phase) and from the
command line, which wins.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Sequence

from . import cache, datasets, paths, profiles
from .notebook.run import resolve_datasets
from .executors import EXECUTORS, Resources, Task, build, wait

__all__ = ["PHASES", "plan", "resources", "run", "main"]

#: the phases, in the order they run
PHASES = ("benchmarks", "models", "notebooks", "book")


def _list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _checkout() -> Path:
    root = paths.repo_root()
    if root is None:
        raise RuntimeError("the grid runs the notebooks of a checkout: run it from the beniful checkout")
    return root


def notebooks(root: Path, names: Sequence[str] | None = None) -> list[str]:
    """The notebooks of ``notebooks/``, table1 first (it is the one that checks the models), then by name.

    Args:
        root: the checkout.
        names: only these (without ``.ipynb``); ``None``: all.

    Returns:
        Notebook names.

    Raises:
        ValueError: a name with no notebook (the valid ones are listed).
    """
    found = sorted(p.stem for p in (root / "notebooks").glob("*.ipynb"))
    found = ["table1"] * ("table1" in found) + [n for n in found if n != "table1"]
    if names:
        bad = [n for n in names if n not in found]
        if bad:
            raise ValueError(f"unknown notebook(s) {', '.join(map(repr, bad))}; valid: {', '.join(found)}")
        return [n for n in found if n in names]
    return found


def run_dir(profile: str, dataset: str | Sequence[str] | None, seeds: Sequence[int] | None,
            runs_root: str = "notebooks/runs") -> str:
    """Where ``make reproduce`` writes a notebook run: in place for the default quick run, else
    ``notebooks/runs/<profile>_<datasets joined by + or default>[_seeds0-1-2]``.

    Args:
        profile: the profile's name.
        dataset: the data set(s) named, or ``None`` for the profile's default set.
        seeds: the seeds passed, or ``None``.
        runs_root: the folder of the non-default runs.

    Returns:
        A path relative to the checkout (or ``runs_root``'s form when it is absolute).
    """
    if profile == "quick" and not dataset and not seeds:
        return "notebooks"
    tail = f"_seeds{'-'.join(map(str, seeds))}" if seeds else ""
    name = dataset if isinstance(dataset, str) or dataset is None else "+".join(dataset)
    return f"{runs_root}/{profile}_{name or 'default'}{tail}"


def _stamp(log_dir: Path, argv: list[str], env: dict[str, str]) -> str:
    h = hashlib.sha256(json.dumps([argv, env], sort_keys=True).encode()).hexdigest()[:16]
    return str(log_dir / "stamps" / h)


def plan(profile: str = "quick", dataset: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
         attacks: Sequence[str] | None = None, only: Sequence[str] | None = None, phases: Sequence[str] = PHASES,
         log_dir: str | os.PathLike | None = None, runs_root: str = "notebooks/runs",
         threads: dict[str, int] | None = None) -> dict[str, list[Task]]:
    """Every task of the grid, by phase.

    Args:
        profile: a registered profile.
        dataset: data sets; empty or ``None``: the profile's default (as ``make reproduce`` without
            ``DATASET``).
        seeds: seeds every notebook runs over; ``None``: the notebooks' default (seed 0).
        attacks: the attacks of phase 1; ``None``: the headline attacks. The clean model is added.
        only: run only these notebooks (names); ``None``: all.
        phases: the phases to plan (:data:`PHASES`).
        log_dir: the grid's folder (logs and stamps); ``None``: ``<cache>/grid``.
        runs_root: folder of the executed notebooks of non-default runs.
        threads: torch threads per phase (``$BENIFUL_NUM_THREADS`` of its jobs).

    Returns:
        Phase name -> its tasks (a phase not asked for is empty).

    Raises:
        ValueError: an unknown profile, data set, attack, notebook or phase.
    """
    from .notebook.run import choose

    bad = [p for p in phases if p not in PHASES]
    if bad:
        raise ValueError(f"unknown phase(s) {', '.join(map(repr, bad))}; valid: {', '.join(PHASES)}")
    prof = profiles.get(profile)
    root = _checkout()
    named = [datasets.check_name(d) for d in dataset] if dataset else []
    # the notebooks' own resolution: the named data sets, or the profile's default set that is on disk
    sets = named or resolve_datasets(prof.name, None)[0]
    atks = ["none"] + choose("attacks", list(attacks) if attacks else None)
    log_dir = Path(log_dir) if log_dir is not None else cache.cache_dir() / "grid"
    threads = threads or {}
    py = sys.executable
    base = {"BENIFUL_CACHE": str(paths.cache_root().resolve()), "BENIFUL_DATA": str(paths.data_root().resolve()),
            "BENIFUL_RESULTS": str(paths.results_root().resolve()), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}

    def env(phase: str) -> dict[str, str]:
        return {**base, **({"BENIFUL_NUM_THREADS": str(threads[phase])} if threads.get(phase) else {})}

    out: dict[str, list[Task]] = {p: [] for p in PHASES}
    seed_list = list(seeds) if seeds else [0]
    for name in sets:
        if "benchmarks" in phases:
            for script, extra in (("bench_detection", ["--no-budget", "--n", "64"]), ("bench_elimination", [])):
                argv = [py, f"benchmarks/{script}.py", "--profile", prof.name, "--dataset", name, "--quick", *extra,
                        "--threads", "1"]
                out["benchmarks"].append(Task(f"benchmark/{name}/{script}", "benchmarks", argv, env("benchmarks"),
                                              str(root), _stamp(log_dir, argv, base)))
        if "models" in phases:
            for seed in seed_list:
                for a in atks:
                    argv = [py, "-m", "beniful.grid", "train", "--profile", prof.name, "--dataset", name,
                            "--attack", a, "--seed", str(seed)]
                    out["models"].append(Task(f"model/{name}/{a}/seed{seed}", "models", argv, env("models"), str(root)))
    if "notebooks" in phases:
        # one job per notebook, over every data set side by side (as make reproduce runs it)
        rd = run_dir(prof.name, named or None, seeds, runs_root)
        params = [] if rd == "notebooks" else ["-p", "profile", prof.name,
                                               *(["-p", "dataset", ",".join(named)] if named else []),
                                               *(["-p", "seed", ",".join(map(str, seeds))] if seeds else [])]
        label = "+".join(sets)
        for nb in notebooks(root, only):
            argv = [py, "-m", "papermill", f"notebooks/{nb}.ipynb", f"{rd}/{nb}.ipynb", "--cwd", "notebooks",
                    "--kernel", "python3", "--no-progress-bar", *params]
            out["notebooks"].append(Task(f"notebook/{label}/{nb}", "notebooks", argv, env("notebooks"), str(root),
                                         _stamp(log_dir, argv, base)))
    if "book" in phases:
        argv = [py, "-m", "beniful.grid", "book"]
        out["book"].append(Task("book", "book", argv, env("book"), str(root), None))
    return out


def _model_done(task: Task) -> bool:
    """Whether a phase-1 task's model is in the cache (its key computed as ``zoo.get`` does)."""
    from . import zoo

    a = task.argv
    opt = {a[i]: a[i + 1] for i in range(len(a) - 1) if a[i].startswith("--")}
    key = (opt["--profile"], opt["--dataset"])
    if key not in _DATA:
        prof = profiles.get(key[0])
        _DATA[key] = prof.subset_data(key[1], *datasets.load(key[1], root=paths.data_root()))
    mkey = zoo.model_key(opt["--attack"], key[1], key[0], int(opt["--seed"]), data=_DATA[key])
    return all(p.is_file() for p in cache.entry_paths(mkey))


_DATA: dict[tuple[str, str], Any] = {}


def is_done(task: Task) -> bool:
    """Whether a task needs no run: its model is cached, or its stamp file exists (the book: never).

    Args:
        task: a task of :func:`plan`.

    Returns:
        True when a rerun skips it.
    """
    if task.phase == "models":
        return _model_done(task)
    return task.stamp is not None and Path(task.stamp).is_file()


def resources(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Resources]:
    """Each phase's :class:`~beniful.executors.Resources`: defaults, then the config file, its phase
    table, then the command line.

    Args:
        config: the parsed TOML config (``{}`` for none).
        overrides: the command line's settings (``None`` values are unset).

    Returns:
        Phase -> resources; the book never asks for a GPU.

    Raises:
        ValueError: an unknown key in the config (the valid ones are listed).
    """
    valid = {f.name for f in fields(Resources)}
    for scope, table in [("", config)] + [(p, config.get(p, {})) for p in PHASES]:
        bad = [k for k in table if k not in valid and k not in PHASES]
        if bad:
            raise ValueError(f"unknown grid setting(s) {', '.join(map(repr, bad))}{' in [' + scope + ']' if scope else ''}; "
                             f"valid: {', '.join(sorted(valid))}")
    top = {k: v for k, v in config.items() if k in valid}
    cli = {k: v for k, v in overrides.items() if v is not None}
    out = {}
    for p in PHASES:
        res = replace(Resources(), **{**top, **config.get(p, {}), **cli})
        out[p] = replace(res, gpus=0) if p == "book" else res
    return out


def run(executor: str = "local", profile: str = "quick", dataset: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None, attacks: Sequence[str] | None = None, only: Sequence[str] | None = None,
        phases: Sequence[str] = PHASES, config: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None,
        log_dir: str | os.PathLike | None = None, runs_root: str = "notebooks/runs", force: bool = False,
        poll_s: float = 10.0, **executor_options: Any) -> dict[str, int]:
    """Plan the grid, skip what is done, submit the rest phase by phase and follow the jobs to the end.

    Args:
        executor: a name from :func:`beniful.executors.available`.
        profile: as for :func:`plan`.
        dataset: as for :func:`plan`.
        seeds: as for :func:`plan`.
        attacks: as for :func:`plan`.
        only: as for :func:`plan`.
        phases: as for :func:`plan`.
        config: settings as the TOML config holds them (:func:`resources`).
        overrides: command-line settings over ``config``.
        log_dir: as for :func:`plan`.
        runs_root: as for :func:`plan`.
        force: rerun the notebooks, benchmarks and book even when their stamps exist.
        poll_s: seconds between status queries.
        **executor_options: passed to the executor (``cluster="debug"``).

    Returns:
        A dict with how many jobs ended ``done`` and ``failed``, and how many tasks were ``skipped`` as done.
    """
    EXECUTORS.get(executor)  # the "valid names" error before any planning
    t0 = time.time()
    res = resources(config or {}, overrides or {})
    threads = {p: r.cpus_per_task for p, r in res.items()}
    log_dir = Path(log_dir) if log_dir is not None else cache.cache_dir() / "grid"
    tasks = plan(profile, dataset, seeds, attacks, only, phases, log_dir, runs_root, threads)
    ex = build(executor, log_dir / "jobs", **executor_options)
    handles: list = []
    prev: list = []
    skipped = 0
    for phase in PHASES:
        todo = [t for t in tasks[phase] if (force and phase != "models") or not is_done(t)]
        skipped += len(tasks[phase]) - len(todo)
        if tasks[phase]:
            print(f"== {phase}: {len(tasks[phase])} task(s), {len(tasks[phase]) - len(todo)} already done, "
                  f"{len(todo)} to run ({ex.name})", flush=True)
        if not todo:
            continue
        for t in todo:  # papermill writes into an existing folder (make reproduce does the same mkdir)
            if t.phase == "notebooks" and t.argv[1:3] == ["-m", "papermill"]:
                (Path(t.cwd or ".") / t.argv[4]).parent.mkdir(parents=True, exist_ok=True)
        hs = ex.submit(todo, res[phase], after=prev, after_ok=phase == "book")
        handles += hs
        prev = hs
    counts = wait(ex, handles, poll_s=poll_s) if handles else {"done": 0, "failed": 0}
    counts["skipped"] = skipped
    print(f"== grid: {counts['done']} done, {counts['failed']} failed, {skipped} skipped (already done) "
          f"in {time.time() - t0:.0f} s; "
          f"logs under {log_dir / 'jobs'}" + ("; rerun the same command to retry the failures" if counts["failed"] else ""),
          flush=True)
    return counts


# ----------------------------------------------------------------------------------------- the jobs


def train(profile: str, dataset: str, attack: str, seed: int) -> None:
    """Phase 1's job: the model exactly as table1 asks for it (same data subset, device and key).

    Args:
        profile: the profile.
        dataset: the data set.
        attack: an attack name, or ``"none"`` for the clean model.
        seed: the seed.
    """
    from . import zoo
    from .notebook.run import setup

    run_ = setup(profile, dataset, attacks=None, seed=seed, plot_style=False)
    tm = zoo.get(attack, progress=True, **run_.zoo_kwargs(seed))
    print(f"{attack} {dataset} seed {seed}: key {tm.key} metrics {tm.metrics} "
          f"(resumed from epoch {tm.meta.get('resumed_from_epoch', 0)})", flush=True)


def book() -> None:
    """Phase 3's job: the book's notebooks in place, then the book, as ``make book-notebooks book``."""
    import subprocess

    root = _checkout()
    for nb in sorted((root / "book").glob("*.ipynb")):
        rel = str(nb.relative_to(root))
        subprocess.run([sys.executable, "-m", "papermill", rel, rel, "--cwd", "book", "--kernel", "python3",
                        "--no-progress-bar"], cwd=root, check=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", "-W", "-n", "--keep-going", "."], cwd=root, check=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m beniful.grid", description=__doc__.split("\n")[0])
    p.add_argument("--executor", default="local", help="local (default) or slurm")
    p.add_argument("--profile", default="quick")
    p.add_argument("--dataset", default="", help="comma list (default: the profile's)")
    p.add_argument("--seeds", default="", help="comma list, e.g. 0,1,2 (default: the notebooks' seed 0)")
    p.add_argument("--attacks", default="", help="comma list of phase 1's attacks (default: the headline set)")
    p.add_argument("--notebooks", default="", help="comma list (default: every notebook)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)} (default: all)")
    p.add_argument("--benchmarks", action="store_true", help="add phase 0: the benchmarks make smoke runs")
    p.add_argument("--no-book", action="store_true", help="leave out phase 3")
    p.add_argument("--config", default=None, help="TOML file of cluster settings")
    p.add_argument("--partition", default=None)
    p.add_argument("--gpus", type=int, default=None, help="GPUs per job (default 0)")
    p.add_argument("--cpus", type=int, default=None, dest="cpus_per_task", help="CPUs (= torch threads) per job (default 1)")
    p.add_argument("--mem-gb", type=float, default=None)
    p.add_argument("--time", type=int, default=None, dest="time_min", help="minutes per job (default 120)")
    p.add_argument("--array-parallelism", type=int, default=None, help="jobs of one array at once (default 64)")
    p.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE", help="extra sbatch option (repeatable)")
    p.add_argument("--log-dir", default=None, help="logs and stamps (default: <cache>/grid)")
    p.add_argument("--runs-root", default="notebooks/runs", help="executed notebooks of non-default runs")
    p.add_argument("--force", action="store_true", help="rerun notebooks and book even when done")
    p.add_argument("--poll", type=float, default=10.0, help="seconds between status queries")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m beniful.grid [options]`` (the grid), ``... train ...`` and ``... book`` (its jobs).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when no job failed, else 1 (the exit status).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        t = argparse.ArgumentParser(prog="python -m beniful.grid train")
        for name in ("--profile", "--dataset", "--attack"):
            t.add_argument(name, required=True)
        t.add_argument("--seed", type=int, required=True)
        a = t.parse_args(argv[1:])
        train(a.profile, a.dataset, a.attack, a.seed)
        return 0
    if argv[:1] == ["book"]:
        book()
        return 0
    a = _parser().parse_args(argv)
    config: dict[str, Any] = {}
    if a.config:
        with open(a.config, "rb") as fh:
            config = tomllib.load(fh)
    sbatch = dict(config.get("sbatch", {}))
    for item in a.sbatch + _list(os.environ.get("GRID_SBATCH")):
        if "=" not in item:
            raise SystemExit(f"--sbatch takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        sbatch[k.strip()] = v.strip()
    overrides = {k: getattr(a, k) for k in ("partition", "gpus", "cpus_per_task", "mem_gb", "time_min",
                                            "array_parallelism")}
    overrides["sbatch"] = sbatch or None
    phases = [p for p in _list(a.phases) if not (a.no_book and p == "book")]
    if not a.benchmarks:
        phases = [p for p in phases if p != "benchmarks"]
    seeds = [int(s) for s in _list(a.seeds)] or None
    counts = run(a.executor, a.profile, _list(a.dataset) or None, seeds, _list(a.attacks) or None,
                 _list(a.notebooks) or None, phases, config, overrides, a.log_dir, a.runs_root, a.force, a.poll)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
