"""Elimination cost: wall time of every registered eliminator's ``repair`` (issue 6, table5).

Same backdoored model (the profile's BadNets zoo model), same defender clean data, same incoming
pool (evaluation.incoming_pool: what BeniFul mines suspicious inputs from), same device. Each
eliminator runs with its defaults plus the profile's budget (beniful.notebook.QUICK_BUDGET: the
settings table3 uses), then ``--param`` overrides.
Reports the median wall time over interleaved repeats, its ratio to fine-tuning (FT), and ACC/ASR
after repair on the held-out evaluation half, so a fast but ineffective method is visible.

    python benchmarks/bench_elimination.py [--profile quick] [--device cpu] [--repeats 3] [--quick]
    python benchmarks/bench_elimination.py --param anp.iterations=200
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from beniful import eliminators, zoo
from beniful.evaluation import elimination_split, incoming_pool
from beniful.training import evaluate
from beniful.zoo import TrainedModel

from benchmarks._common import (accepts, base_parser, median, parse_params, print_table, rotate, save, select, setup,
                                factory_of, profile_params, smoke_overrides, timed)

BASELINE = "ft"
#: --quick: shrink every iteration count a method exposes (smoke run; timings not comparable)
SMOKE = {"*": {"epochs": 1}, "anp": {"iterations": 10}, "ibau": {"rounds": 1, "epochs_per_round": 1},
         "nad": {"teacher_epochs": 1}, "beniful": {"detector_kwargs": {"vae_epochs": 3}}}


def parser():
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--attack", default="badnets", help="which zoo model to load")
    p.add_argument("--eliminators", default=None, help="comma list (default: every registered eliminator)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="eliminator keyword override, repeatable (e.g. ft.epochs=5)")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the epochs of every eliminator that has them (default: theirs)")
    return p


def main(argv: Sequence[str] | None = None, tm: TrainedModel | None = None) -> pd.DataFrame:
    """Run the benchmark; ``tm`` replaces the zoo model (tests pass a tiny one)."""
    args = parser().parse_args(argv)
    st = setup(args)
    params = parse_params(args.param)
    budget = profile_params(st.profile.name, "eliminators")
    names = select(args.eliminators, eliminators.available(), "eliminator")
    print(st.header("elimination wall time"))
    if tm is None:
        tm = zoo.get(args.attack, st.dataset, st.profile, seed=args.seed, device=str(st.device), progress=True)
    model = tm.model.to(st.device).eval()
    clean = tm.clean
    pool_ds, eval_ds = elimination_split(tm.test, tm.seed)
    x_pool, _ = incoming_pool(tm, pool_ds)
    x_eval, y_eval = eval_ds.tensors()
    print(f"  model: {tm.attack_name} zoo model; clean data {len(clean)} images, pool {len(x_pool)}, "
          f"evaluation {len(x_eval)}; eliminators: {', '.join(names) or 'none registered'}")

    def kwargs(name: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"seed": args.seed, "device": str(st.device), **budget.get(name, {})}
        factory = factory_of(eliminators.ELIMINATORS, name)
        if args.quick:
            kw.update(smoke_overrides(name, factory, SMOKE))
        if args.epochs is not None and accepts(factory, "epochs"):
            kw["epochs"] = args.epochs
        kw.update(params.get(name, {}))
        return kw

    errors: dict[str, str] = {}
    secs: dict[str, list[float]] = {n: [] for n in names}
    inner: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, Any] = {}
    for r in range(st.repeats):
        for name in rotate(names, r):
            if name in errors:
                continue
            try:
                elim = eliminators.build(name, **kwargs(name))
                t, fixed = timed(lambda e=elim: e.repair(model, clean, pool=x_pool), st.device)
                secs[name].append(t)
                print(f"  repeat {r + 1}/{st.repeats} {name}: {t:.1f} s", flush=True)
                inner[name].append(elim.wall_seconds)
                last[name] = (elim, fixed)
            except Exception as exc:  # an eliminator still being written must not stop the others
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"  ! {name} failed:\n{traceback.format_exc()}", file=sys.stderr)

    before = evaluate(model, x_eval, y_eval, tm.attack)
    base = median(secs.get(BASELINE, []))
    rows = []
    for name in names:
        s = median(secs[name])
        after = evaluate(last[name][1], x_eval, y_eval, tm.attack) if name in last else {"acc": float("nan"),
                                                                                          "asr": float("nan")}
        elim = last[name][0] if name in last else None
        rows.append({**st.columns(), "attack": tm.attack_name, "eliminator": name,
                     "settings": "budget" if budget.get(name) else "defaults", "wall_seconds": s,
                     "repair_wall_seconds": median(inner[name]),
                     "ratio_vs_ft": s / base if base == base else float("nan"),
                     "acc_before": before["acc"], "asr_before": before["asr"], "acc": after["acc"], "asr": after["asr"],
                     "n_clean": len(clean), "n_pool": len(x_pool),
                     "eliminator_params": repr(elim.params()) if elim is not None else "",
                     "error": errors.get(name, "")})
    df = pd.DataFrame(rows, columns=list(st.columns()) + [
        "attack", "eliminator", "settings", "wall_seconds", "repair_wall_seconds", "ratio_vs_ft", "acc_before",
        "asr_before",
        "acc", "asr", "n_clean", "n_pool", "eliminator_params", "error"])
    print()
    if BASELINE not in names or base != base:
        print(f"(no {BASELINE.upper()} measurement: ratio_vs_ft is NaN)")
    print_table(df, ["eliminator", "settings", "wall_seconds", "ratio_vs_ft", "acc", "asr", "error"])
    save(df, st, "bench_elimination")
    return df


if __name__ == "__main__":
    main()
