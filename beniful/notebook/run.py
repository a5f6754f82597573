"""A notebook's parameters, checked before any work: profile, dataset, attacks, seeds, device.

Every notebook starts with ``run = nb.setup(profile, dataset, attacks, seed, device)``: an unknown
value fails at once with the valid ones named, before a model is trained, and the returned
:class:`Run` carries the loaded data and the provenance label every table and figure shows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch

from .. import attacks as attacks_mod
from .. import datasets, paths, profiles
from .. import detectors as detectors_mod
from .. import eliminators as eliminators_mod
from ..datasets import ImageDataset
from ..registry import Registry
from ..utils import resolve_device

__all__ = ["HEADLINE", "REGISTRIES", "Run", "setup", "choose", "registry", "set_threads"]

#: The methods every table shows by default, in table order (the headline set of the paper's tables;
#: other registered methods, e.g. later attacks, run when a notebook names them).
HEADLINE: dict[str, tuple[str, ...]] = {
    "attacks": profiles.ATTACK_NAMES,
    "detectors": ("beniful", "strip", "scale_up", "ibd_psc", "teco"),
    "eliminators": ("beniful", "ft", "fp", "nad", "anp", "ibau"),
}

#: the registry of each kind of method a notebook can choose from
REGISTRIES: dict[str, Registry] = {"attacks": attacks_mod.ATTACKS, "detectors": detectors_mod.DETECTORS,
                                   "eliminators": eliminators_mod.ELIMINATORS}


def _as_list(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, Iterable):
        items = list(value)
    else:
        raise ValueError(f"{what} must be None, a list of names or a comma-separated string; got {value!r}")
    for v in items:
        if not isinstance(v, str):
            raise ValueError(f"{what} must hold names (strings); got {v!r}")
    if not items:
        raise ValueError(f"{what} is empty; pass None for the default set")
    return items


def choose(kind: str, names: Any = None) -> list[str]:
    """The names to run for ``kind`` ("attacks", "detectors", "eliminators").

    ``None`` = the headline set (:data:`HEADLINE`), in table order. An explicit list (or
    comma-separated string) must name registered entries; otherwise ValueError lists the valid ones.
    """
    reg = registry(kind)
    items = _as_list(names, kind)
    if items is None:
        return [n for n in HEADLINE[kind] if n in reg]
    out = []
    for n in items:
        key = reg.canonical(n)  # any spelling; an unknown name raises naming the valid ones
        if key not in out:
            out.append(key)
    return out


def registry(kind: str) -> Registry:
    """The registry of ``kind`` (``"attacks"``, ``"detectors"`` or ``"eliminators"``)."""
    if kind not in REGISTRIES:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(REGISTRIES)}")
    return REGISTRIES[kind]



def _check_seeds(seed: Any) -> list[int]:
    seeds = [seed] if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else seed
    if isinstance(seeds, str):
        seeds = [s.strip() for s in seeds.split(",")]
        try:
            seeds = [int(s) for s in seeds]
        except ValueError:
            raise ValueError(f"seed must be a non-negative integer or a list of them; got {seed!r}") from None
    if not isinstance(seeds, (list, tuple)) or not seeds or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ValueError(f"seed must be a non-negative integer or a list of them; got {seed!r}")
    return [int(s) for s in seeds]


@dataclass
class Run:
    """A notebook's validated parameters plus the loaded data (loaded once, shared by every model)."""

    profile: str
    dataset: str
    attacks: list[str]
    seeds: list[int]
    device: torch.device
    data: tuple[ImageDataset, ImageDataset]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def quality_checks(self) -> bool:
        """Whether the notebook asserts its quality targets (ACC, ASR, AUROC): the profile's
        ``quality_checks`` (off for ``smoke``, whose 2-epoch models meet none); the structural checks
        (rows, columns, values in range) run on every profile."""
        return profiles.get(self.profile).quality_checks

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def device_label(self) -> str:
        return self.device.type

    @property
    def provenance(self) -> str:
        """The label every table and figure carries: profile / dataset / device / seeds."""
        return (f"profile={self.profile} / dataset={self.dataset} / device={self.device_label} / "
                f"seeds={','.join(str(s) for s in self.seeds)}")

    def zoo_kwargs(self, seed: int | None = None) -> dict[str, Any]:
        """Keyword arguments for ``zoo.get`` (same data object, so nothing is reloaded)."""
        return {"dataset": self.dataset, "profile": self.profile, "seed": self.seed if seed is None else seed,
                "device": str(self.device), "data": self.data}

    def columns(self, seed: int | None = None) -> dict[str, Any]:
        """Provenance columns for a result row."""
        return {"profile": self.profile, "device": self.device_label, "seed": self.seed if seed is None else seed}


def set_threads() -> int | None:
    """Apply ``$BENIFUL_NUM_THREADS`` to torch (``torch.set_num_threads``, process-wide) when it is set.

    ``make reproduce`` runs two notebook kernels side by side with one thread each (two one-thread
    kernels do 1.5x the work of one two-thread kernel on two cores); outside ``make`` nothing changes.

    Returns:
        The thread count applied, or ``None`` when the variable is unset.
    """
    threads = os.environ.get("BENIFUL_NUM_THREADS")
    if not threads:
        return None
    try:
        n = int(threads)
    except ValueError:
        raise ValueError(f"BENIFUL_NUM_THREADS must be a positive integer, got {threads!r}") from None
    if n < 1:
        raise ValueError(f"BENIFUL_NUM_THREADS must be a positive integer, got {threads!r}")
    torch.set_num_threads(n)
    return n


def setup(profile: str = "quick", dataset: str | None = None, attacks: Any = None, seed: Any = 0,
          device: str = "auto", *, need_attacks: bool = True, load_data: bool = True, plot_style: bool = True,
          **extra: Any) -> Run:
    """Validate a notebook's parameters, load its data and set the plotting style.

    Every check runs before any model is trained: an unknown profile, dataset, attack, seed or
    device raises a ValueError naming the valid values; a data set missing from disk raises
    ``DatasetNotFoundError`` naming the ``data_scripts`` command that downloads it.

    Process-wide state it changes, on purpose (a notebook kernel is one run): torch's thread count
    when ``$BENIFUL_NUM_THREADS`` is set (:func:`set_threads`) and, with ``plot_style``, matplotlib's and seaborn's style (:func:`beniful.notebook.style.style`). The
    library itself changes none of these on import.

    Args:
        profile: a registered profile name (``profiles.available()``).
        dataset: a registered data set, or ``None`` for the profile's default.
        attacks: ``None`` (the headline set), a list of names or a comma-separated string.
        seed: an int, a list of ints or a comma-separated string of them.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:N]"``.
        need_attacks: fail when no attack is chosen.
        load_data: load the data set now (once, shared by every model of the notebook).
        plot_style: apply the book's figure style.
        **extra: notebook-specific values kept on ``Run.extra``.

    Returns:
        The validated :class:`Run`.
    """
    prof = profiles.get(profile)
    ds = datasets.check_name(dataset if dataset else prof.default_dataset)
    chosen = choose("attacks", attacks)
    if need_attacks and not chosen:
        raise ValueError(f"no attack to run; registered attacks: {', '.join(attacks_mod.available())}")
    seeds = _check_seeds(seed)
    dev = resolve_device(device)
    set_threads()
    # the profile's share of the data (smoke: a few hundred images), cut once for every model
    data = prof.subset_data(ds, *datasets.load(ds, root=paths.data_root())) if load_data else None
    if plot_style:
        from .style import style  # style reads HEADLINE from this module

        style()
    return Run(prof.name, ds, chosen, seeds, dev, data, dict(extra))  # type: ignore[arg-type]

