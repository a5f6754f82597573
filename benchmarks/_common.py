"""Shared plumbing of the benchmark scripts: options, device naming, timing, tables.

Every benchmark measures a baseline and the methods *in the same run*, interleaved repeat by
repeat (the order rotates each repeat), and reports medians and ratios to the baseline. Ratios
measured this way survive a machine that other jobs share, where absolute images/s do not.
"""
from __future__ import annotations

import argparse
import ast
import inspect
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch

from beniful import profiles
from beniful.datasets import check_name
from beniful.results import write_table
from beniful.utils import resolve_device

__all__ = ["base_parser", "setup", "device_name", "sync", "timed", "median", "rotate", "parse_params", "select",
           "accepts", "smoke_overrides", "factory_of", "profile_params",
           "print_table", "save", "Setup"]


def base_parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark takes (issue 6): profile, dataset, device, repeats, quick."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--profile", default=None,
                   help=f"one of {', '.join(profiles.available())} (default: quick)")
    p.add_argument("--dataset", default=None, help="dataset name (default: the profile's)")
    p.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda[:N]'")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per method (median reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 on CPU, so ratios are robust to a shared machine; "
                        "torch's default on CUDA)")
    p.add_argument("--quick", action="store_true", help="short smoke run: few images, one repeat")
    p.add_argument("--results-dir", default=None, help="root of results/ (default: $BENIFUL_RESULTS or ./results)")
    p.add_argument("--no-write", action="store_true", help="print only, write no CSV")
    return p


class Setup:
    """Resolved common options."""

    def __init__(self, args: argparse.Namespace) -> None:
        if args.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
        self.args = args
        self.profile = profiles.get(args.profile or "quick")
        self.dataset = check_name(args.dataset or self.profile.default_dataset)
        self.device = resolve_device(args.device)
        threads = args.threads if args.threads is not None else (1 if self.device.type == "cpu" else 0)
        if threads > 0:
            torch.set_num_threads(threads)
        self.threads = torch.get_num_threads()
        self.device_name = device_name(self.device)
        self.repeats = 1 if args.quick else args.repeats

    def header(self, title: str) -> str:
        return (f"{title}\n  profile={self.profile.name} dataset={self.dataset} device={self.device} "
                f"({self.device_name}) torch threads={self.threads} repeats={self.repeats} seed={self.args.seed}")

    def columns(self) -> dict[str, Any]:
        """Provenance columns of every row."""
        return {"profile": self.profile.name, "dataset": self.dataset, "device": str(self.device),
                "device_name": self.device_name, "threads": self.threads, "repeats": self.repeats,
                "seed": self.args.seed}


def setup(args: argparse.Namespace) -> Setup:
    return Setup(args)


def device_name(device: torch.device) -> str:
    """Human-readable name of the card or CPU (the number means nothing without it)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine() or 'cpu'} ({os.cpu_count()} cores)"


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so wall-clock timing covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """(seconds, result) of ``fn()``, synchronised before and after on CUDA."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def median(values: Sequence[float]) -> float:
    vals = [v for v in values if v == v]
    return statistics.median(vals) if vals else float("nan")


def rotate(items: Sequence[Any], r: int) -> list[Any]:
    """``items`` rotated by ``r``: each repeat starts with a different method (no position bias)."""
    items = list(items)
    if not items:
        return items
    r %= len(items)
    return items[r:] + items[:r]


def parse_params(specs: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["strip.n=100", "beniful.layer='layer2'"]`` -> ``{"strip": {"n": 100}, "beniful": {"layer": "layer2"}}``."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs or []:
        if "=" not in spec or "." not in spec.split("=", 1)[0]:
            raise ValueError(f"--param must look like METHOD.KEY=VALUE, got {spec!r}")
        lhs, rhs = spec.split("=", 1)
        method, key = lhs.split(".", 1)
        try:
            value = ast.literal_eval(rhs)
        except (ValueError, SyntaxError):
            value = rhs  # a bare string
        out.setdefault(method.strip().lower(), {})[key.strip()] = value
    return out


def accepts(factory: Any, arg: str) -> bool:
    """Whether ``factory(**{arg: ...})`` is allowed: ``arg`` is named by its ``__init__``, or by a
    base class's ``__init__`` that a ``**kwargs`` forwards to (a method whose ``__init__`` lacks
    ``**kwargs`` and the name does not take it, even when its base does)."""
    inits = [k.__dict__["__init__"] for k in getattr(factory, "__mro__", ()) if "__init__" in k.__dict__]
    for f in inits or [factory]:
        try:
            params = inspect.signature(f).parameters
        except (TypeError, ValueError):
            return False
        if arg in params:
            return True
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            return False
    return False


def smoke_overrides(name: str, factory: Any, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The entries of ``table[name]`` (and ``table["*"]``) that ``factory`` accepts: --quick shrinks
    iteration counts without breaking when a method renames or lacks a knob."""
    if factory is None:
        return {}
    wanted = {**table.get("*", {}), **table.get(name, {})}
    return {k: v for k, v in wanted.items() if accepts(factory, k)}


def profile_params(profile: str, kind: str) -> dict[str, dict[str, Any]]:
    """The per-method keyword budget the table notebooks use for ``profile`` (beniful.notebook's
    budget of that profile: QUICK_BUDGET on the quick profile, nothing on the paper profile), so
    table5's costs are those of the settings tables 2 and 3 ran."""
    try:
        from beniful.notebook import budget
    except ImportError:  # pragma: no cover - the notebook helpers are optional here
        return {}
    return {k: dict(v) for k, v in budget(profile, kind).items()}


def factory_of(registry: Any, name: str) -> Any:
    """The registered factory, or None (a name the registry does not hold, e.g. a test's stand-in)."""
    try:
        return registry.get(name)
    except ValueError:
        return None


def select(requested: str | None, available: Sequence[str], kind: str) -> list[str]:
    """Methods to run: all registered ones, or a comma list checked against them."""
    if not requested:
        return list(available)
    names = [n.strip().lower().replace("-", "_") for n in requested.split(",") if n.strip()]
    bad = [n for n in names if n not in available]
    if bad:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, bad))}; registered: {', '.join(available) or 'none'}")
    return names


def print_table(df: pd.DataFrame, columns: Sequence[str]) -> None:
    cols = [c for c in columns if c in df.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:,.4g}".format):
        print(df[cols].to_string(index=False))


def save(df: pd.DataFrame, st: Setup, name: str, dataset: str | None = None) -> Path | None:
    """Write ``results/<profile>/<dataset>/<name>.csv`` unless ``--no-write``."""
    if st.args.no_write:
        return None
    path = write_table(df, st.profile.name, dataset or st.dataset, name, root=st.args.results_dir)
    print(f"wrote {path}")
    return path
