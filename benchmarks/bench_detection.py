"""Detection throughput: plain inference vs every registered detector's ``score()`` (issue 6, table5).

Same model (the profile's BadNets zoo model), same inputs (one batch of 256 from a seeded sample of
the natural mix), same device. For each method: images/s (median over interleaved repeats; a
fast method is re-run within a repeat until ``--min-time`` has passed),
its ratio to plain inference, the forward passes per input it declares, and the passes actually
counted by hooks on the model's first and last parameterised layers.

    python benchmarks/bench_detection.py [--profile quick] [--device cpu] [--repeats 3] [--quick]
    python benchmarks/bench_detection.py --param strip.n_overlays=50     # override a detector's setting

Each detector runs at its defaults (its paper's settings; ``settings=defaults``) and, where the
profile's budget (beniful.notebook.QUICK_BUDGET: what table2 runs, e.g. STRIP with fewer overlays)
changes it, also at the budgeted settings (``settings=budget``); ``--param`` overrides both.

Acceptance (issue 6, CPU, quick model; methods at their paper settings): BeniFul >= 0.6 of plain
inference, >= 5x SCALE-UP, >= 50x STRIP (N = 100 overlays). Fitting (VAE training, calibration)
is not timed here; its time is reported separately (``fit_seconds``).
"""
from __future__ import annotations

import copy
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
import torch
from torch import Tensor, nn

from beniful import detectors, zoo
from beniful.evaluation import natural_mix
from beniful.utils import batches
from beniful.zoo import TrainedModel

from benchmarks._common import (base_parser, median, parse_params, print_table, rotate, save, select, setup,
                                factory_of, profile_params, smoke_overrides, timed)

BASELINE = "plain"
#: issue 6's acceptance: (method, minimum throughput ratio of BeniFul over it)
ACCEPTANCE = (("plain", 0.6), ("scale_up", 5.0), ("strip", 50.0))
#: --quick: cut fitting cost only (scoring cost, e.g. STRIP's N, stays at each method's default)
SMOKE = {"beniful": {"vae_epochs": 3}}


def parser():
    p = base_parser(__doc__.split("\n")[0])
    p.add_argument("--attack", default="badnets", help="which zoo model to load")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n", type=int, default=256, help="images scored per call (default: one batch)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds: a fast method is called repeatedly until this much time has passed, per "
                        "repeat, so its timing is not a single short, noisy call (default 3; --quick: 0)")
    p.add_argument("--detectors", default=None, help="comma list (default: every registered detector)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="detector keyword override, repeatable")
    p.add_argument("--no-budget", action="store_true",
                   help="ignore the profile's per-method budget: every detector at its defaults only")
    return p


class PassCounter:
    """Counts inputs through a model's first and last parameterised leaf modules.

    Hooks are registered *before* ``fit`` so that copies a detector makes of the model (IBD-PSC's
    amplified variants) carry them too; the counts are reset before the measured call.
    """

    def __init__(self, model: nn.Module) -> None:
        leaves = [m for m in model.modules() if not list(m.children()) and any(True for _ in m.parameters())]
        if not leaves:
            raise ValueError(f"{type(model).__name__} has no parameterised layer to count passes on")
        self.counts = {"first": 0, "last": 0}
        self.handles = [leaves[0].register_forward_hook(self._hook("first")),
                        leaves[-1].register_forward_hook(self._hook("last"))]

    def _hook(self, key: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            if inputs and isinstance(inputs[0], Tensor) and inputs[0].ndim > 0:
                self.counts[key] += int(inputs[0].shape[0])
        return hook

    def reset(self) -> None:
        self.counts = {"first": 0, "last": 0}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def plain_inference(model: nn.Module, x: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """The baseline: one forward pass per input, batches moved to the device and logits back,
    exactly as ``Detector.score`` moves them."""
    return torch.cat([model(x[s].to(device)).float().cpu() for s in batches(len(x), batch_size)])


def time_per_call(fn: Callable[[], Any], device: torch.device, min_time: float) -> float:
    """Seconds per call of ``fn``, calling it again until ``min_time`` seconds have passed."""
    total, calls = 0.0, 0
    while calls == 0 or total < min_time:
        total += timed(fn, device)[0]
        calls += 1
    return total / calls


def bench_inputs(tm: TrainedModel, n: int, seed: int) -> Tensor:
    """A seeded sample of ``n`` images from the natural mix (clean test + triggered non-target)."""
    x_clean, x_trig = natural_mix(tm)
    x = torch.cat([x_clean, x_trig])
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n]
    if len(idx) < n:  # small test sets: repeat
        idx = idx.repeat((n + len(idx) - 1) // len(idx))[:n]
    return x[idx]


def main(argv: Sequence[str] | None = None, tm: TrainedModel | None = None) -> pd.DataFrame:
    """Run the benchmark; ``tm`` replaces the zoo model (tests pass a tiny one)."""
    args = parser().parse_args(argv)
    st = setup(args)
    n = args.n
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    min_time = args.min_time if args.min_time is not None else (0.0 if args.quick else 3.0)
    bs = args.batch_size
    params = parse_params(args.param)
    budget = profile_params(st.profile.name, "detectors")
    names = select(args.detectors, detectors.available(), "detector")
    print(st.header("detection throughput"))
    if tm is None:
        tm = zoo.get(args.attack, st.dataset, st.profile, seed=args.seed, device=str(st.device), progress=True)
    model = tm.model.to(st.device).eval()
    x = bench_inputs(tm, n, args.seed)
    clean = tm.clean
    print(f"  model: {tm.attack_name} zoo model, {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{n} images, batch {bs}; detectors: {', '.join(names) or 'none registered'}")

    runners: dict[str, Callable[[Tensor], Any]] = {BASELINE: lambda xi: plain_inference(model, xi, bs, st.device)}
    info: dict[str, dict[str, Any]] = {BASELINE: {"detector": BASELINE, "settings": "defaults", "forward_passes": 1.0,
                                                  "fit_seconds": 0.0, "params": ""}}
    errors: dict[str, str] = {}
    counters: dict[str, PassCounter] = {}
    keys: list[str] = [BASELINE]
    for name in names:
        for settings, base_kw in variants(name, budget, args):
            key = name if settings == "defaults" else f"{name}@{settings}"
            keys.append(key)
            info[key] = {"detector": name, "settings": settings}
            try:
                det_model = copy.deepcopy(model)
                counters[key] = PassCounter(det_model)
                kw = dict(base_kw)
                if args.quick:
                    kw.update(smoke_overrides(name, factory_of(detectors.DETECTORS, name), SMOKE))
                kw.update(params.get(name, {}))
                det = detectors.build(name, seed=args.seed, device=str(st.device), batch_size=bs, **kw)
                det.fit(det_model, clean)
                runners[key] = det.score
                info[key].update({"forward_passes": float(det.forward_passes), "fit_seconds": det.fit_seconds,
                                  "params": repr(det.params())})
            except Exception as exc:  # a detector still being written must not stop the others
                errors[key] = f"{type(exc).__name__}: {exc}"
                print(f"  ! {key} failed to build/fit:\n{traceback.format_exc()}", file=sys.stderr)

    counters[BASELINE] = PassCounter(model)  # after the copies above, so they do not inherit its hooks
    # passes per input counted on a few images (doubles as every method's warm-up)
    measured: dict[str, tuple[float, float]] = {}
    xb = x[:min(bs, 16)]
    for name in list(runners):
        c = counters[name]
        c.reset()
        try:
            runners[name](xb)
            measured[name] = (c.counts["first"] / len(xb), c.counts["last"] / len(xb))
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            runners.pop(name)
            print(f"  ! {name} failed to score:\n{traceback.format_exc()}", file=sys.stderr)
        c.remove()

    secs: dict[str, list[float]] = {k: [] for k in runners}
    for r in range(st.repeats):
        for name in rotate(list(runners), r):
            if name in errors:
                continue
            try:
                secs[name].append(time_per_call(lambda run=runners[name]: run(x), st.device, min_time))
                print(f"  repeat {r + 1}/{st.repeats} {name}: {n / secs[name][-1]:,.1f} images/s", flush=True)
            except Exception as exc:
                errors[name] = f"{type(exc).__name__}: {exc}"
                print(f"  ! {name} failed while timed: {exc}", file=sys.stderr)

    base = median(secs.get(BASELINE, []))
    base_ips = n / base if base == base and base > 0 else float("nan")
    rows = []
    for key in keys:
        s = median(secs.get(key, []))
        ips = n / s if s == s and s > 0 else float("nan")
        first, last = measured.get(key, (float("nan"), float("nan")))
        meta = info[key]
        rows.append({**st.columns(), "attack": tm.attack_name, "detector": meta["detector"],
                     "settings": meta["settings"], "batch_size": bs, "n_images": n, "min_time": min_time,
                     "seconds": s, "images_per_second": ips, "ratio_vs_plain": ips / base_ips,
                     "forward_passes": meta.get("forward_passes", float("nan")),
                     "measured_passes_first_layer": first, "measured_passes_last_layer": last,
                     "fit_seconds": meta.get("fit_seconds", float("nan")),
                     "detector_params": meta.get("params", ""), "error": errors.get(key, "")})
    df = pd.DataFrame(rows)
    print()
    print_table(df, ["detector", "settings", "images_per_second", "ratio_vs_plain", "forward_passes",
                     "measured_passes_first_layer", "measured_passes_last_layer", "fit_seconds", "error"])
    acceptance(df)
    save(df, st, "bench_detection")
    return df


def variants(name: str, budget: dict[str, dict[str, Any]], args: Any) -> list[tuple[str, dict[str, Any]]]:
    """Settings to time a detector with: its defaults (its paper's settings, which the acceptance
    is defined on) and, when the profile's budget changes it, the budgeted settings table2 runs.
    A --quick smoke run times only the budgeted one; --no-budget only the defaults."""
    b = {} if args.no_budget else dict(budget.get(name, {}))
    out: list[tuple[str, dict[str, Any]]] = []
    if not b or not args.quick:
        out.append(("defaults", {}))
    if b:
        out.append(("budget", b))
    return out


def acceptance(df: pd.DataFrame) -> dict[str, bool]:
    """Print issue 6's CPU acceptance checks (each method at its default settings, i.e. its
    paper's, where measured; else the budgeted run, flagged); returns {method: passed}."""
    ips: dict[str, tuple[float, str]] = {}
    for row in df.itertuples():
        v = float(row.images_per_second)
        if v == v and (row.detector not in ips or row.settings == "defaults"):
            ips[row.detector] = (v, row.settings)
    out: dict[str, bool] = {}
    if "beniful" not in ips:
        print("acceptance: no BeniFul measurement")
        return out
    b = ips["beniful"][0]
    print("acceptance (issue 6):")
    for other, need in ACCEPTANCE:
        if other not in ips:
            print(f"  beniful vs {other}: not measured")
            continue
        o, settings = ips[other]
        ratio = b / o
        out[other] = ratio >= need
        note = "" if settings == "defaults" else f"  [{other} at its {settings} settings, not its paper's]"
        print(f"  beniful / {other} = {ratio:,.3g}  (need >= {need:g}): {'PASS' if out[other] else 'FAIL'}{note}")
    return out


if __name__ == "__main__":
    main()
