"""Device check: the notebooks' calls on a CUDA machine, with the ``paper`` profile's recipe.

CIFAR-10 and Tiny ImageNet cannot be fetched on the machines this project is built on, so this
check runs the paper profile's *recipe* (PreAct-ResNet-18 at width 64, SGD 0.01 cosine, 100 epochs,
5 % clean data) on the embedded ``mnist5k`` digits. It exercises every CUDA path the paper-profile
notebooks take (bf16 autocast, channels_last, on-device poisoning and augmentation, every detector
and the BeniFul eliminator on the device) and measures what the wider model changes. Its numbers are
**not** the paper's reproduction: same data as the quick profile, the paper's model and schedule.

It makes the same package calls as ``fig3`` (Backdoor Consistency, with repair), ``table2`` (all
five detectors) and ``table3`` (the BeniFul row), in that order of importance, and writes each table
as soon as it is complete, so a run stopped at its time limit keeps what it finished::

    python benchmarks/gpu_check.py --out results/paper/mnist5k          # on a CUDA machine
    python benchmarks/gpu_check.py --profile quick --attacks badnets     # a CPU smoke run of the script
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch

from beniful import ablations, evaluation, zoo
from beniful import notebook as nb
from beniful.cache import atomic_write_text


def _write(df: pd.DataFrame, out: Path, name: str, run: nb.Run) -> None:
    """``<out>/<name>.csv`` for seed 0, ``<name>_seeds<s>.csv`` otherwise (the notebooks' naming),
    written atomically, so another seed never overwrites seed 0's table."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{nb.table_name(run, name)}.csv"
    atomic_write_text(path, df.to_csv(index=False))
    print(f"-> {path} ({len(df)} rows)", flush=True)


def _columns(run: nb.Run) -> dict:
    """The notebooks' provenance columns plus the device's own name (e.g. 'NVIDIA H200')."""
    return {**run.columns(), "device_name": run.extra.get("device_name", run.device_label)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--dataset", default="mnist5k")
    ap.add_argument("--attacks", default=None, help="comma-separated; default: all five")
    ap.add_argument("--detectors", default=None, help="comma-separated; default: every registered detector")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None, help="folder for the CSVs (default: results/<profile>/<dataset>)")
    ap.add_argument("--steps", default="fig3,table3,table2",
                    help="comma-separated steps after training, run in this order: fig3, table3, table2")
    a = ap.parse_args(argv)
    attacks = a.attacks.split(",") if a.attacks else None
    steps = [s for s in a.steps.split(",") if s]
    bad = sorted(set(steps) - set(STEPS))
    if bad:
        raise ValueError(f"unknown steps {bad}; valid steps: {', '.join(STEPS)}")
    run = nb.setup(a.profile, a.dataset, attacks, a.seed, a.device, plot_style=False)
    out = Path(a.out) if a.out else nb.results_root() / run.profile / run.dataset
    name = torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu"
    print(f"{run.provenance}; {name}; torch {torch.__version__}; cache {os.environ.get('BENIFUL_CACHE', '~/.cache')}",
          flush=True)
    t_all = time.time()

    # 1. models (clean + each attack): trained or loaded once, held for every step below
    times, models = [], {}
    for atk in ["none", *run.attacks]:
        t0 = time.time()
        tm = models[atk] = zoo.get(atk, progress=False, **run.zoo_kwargs())
        times.append({"attack": atk, "acc": tm.metrics.get("acc"), "asr": tm.metrics.get("asr"),
                      "seconds": time.time() - t0})
        print(f"model {atk:8s} acc {tm.metrics.get('acc', float('nan')):.3f} asr {tm.metrics.get('asr', float('nan')):.3f} "
              f"{time.time() - t0:6.1f} s", flush=True)
    run.extra["device_name"] = name
    _write(pd.DataFrame(times).assign(**_columns(run)), out, "gpu_check_models", run)

    det_kwargs = nb.method_params(run.profile, "detectors", ["beniful"])["beniful"]
    elim_kwargs = {k: v for k, v in nb.method_params(run.profile, "eliminators", ["beniful"])["beniful"].items()
                   if k != "detector_kwargs"}

    for step in steps:
        STEPS[step](run, out, a, models, det_kwargs, elim_kwargs)
    print(f"total {time.time() - t_all:.0f} s", flush=True)


def fig3(run: nb.Run, out: Path, a: argparse.Namespace, models: dict, det_kwargs: dict, elim_kwargs: dict) -> None:
    """Backdoor Consistency: the detector on the clean, backdoored and BeniFul-repaired model."""
    dev = run.device
    frames = []
    for atk in run.attacks:
        part = ablations.backdoor_consistency(models[atk], clean_tm=models["none"], eliminate=True, layer="layer3",
                                              detector_kwargs=det_kwargs, device=str(dev), **elim_kwargs)
        frames.append(part)
        print(part[["attack", "model", "acc", "asr", "flag_rate_clean", "flag_rate_triggered", "auroc", "seconds"]]
              .round(3).to_string(index=False, header=len(frames) == 1), flush=True)
        _write(pd.concat(frames, ignore_index=True).assign(**_columns(run)), out, "fig3", run)


def table2(run: nb.Run, out: Path, a: argparse.Namespace, models: dict, det_kwargs: dict, elim_kwargs: dict) -> None:
    """Every registered detector (BeniFul first), one CSV write per detector."""
    dev = run.device
    dets = nb.choose("detectors", a.detectors.split(",") if a.detectors else None)
    dets = sorted(dets, key=lambda d: d != "beniful")
    kw = nb.method_params(run.profile, "detectors", dets, {})
    n_scored = nb.detection_test_images(run.profile, None)
    rows = []
    for d in dets:
        for atk in run.attacks:
            t0 = time.time()
            tm = nb.test_subset(models[atk], n_scored, run.seed)
            row = evaluation.detection_row(tm, d, device=str(dev), **kw[d])
            rows.append({**row, **_columns(run), "n_test": len(tm.test)})
            print(f"table2 {atk:8s} {d:9s} auroc {row['auroc']:.3f} tpr@5 {row['tpr_at_5fpr']:.3f} "
                  f"{time.time() - t0:6.1f} s", flush=True)
        _write(pd.DataFrame(rows), out, "table2", run)


def table3(run: nb.Run, out: Path, a: argparse.Namespace, models: dict, det_kwargs: dict, elim_kwargs: dict) -> None:
    """The BeniFul row of table3 (the repair is shared with fig3 through the cache)."""
    dev = run.device
    kw = nb.method_params(run.profile, "eliminators", ["beniful"], {})["beniful"]
    rows = []
    for atk in run.attacks:
        t0 = time.time()
        tm = models[atk]
        row = evaluation.elimination_row(tm, "beniful", device=str(dev), **kw)
        rows.append({**row, **_columns(run)})
        print(f"table3 {atk:8s} acc {row['acc_before']:.3f}->{row['acc']:.3f} asr {row['asr_before']:.3f}->"
              f"{row['asr']:.3f} {time.time() - t0:6.1f} s", flush=True)
    _write(pd.DataFrame(rows), out, "table3", run)


STEPS = {"fig3": fig3, "table3": table3, "table2": table2}


if __name__ == "__main__":
    main()
