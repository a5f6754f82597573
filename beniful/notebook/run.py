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

__all__ = ["HEADLINE", "REGISTRIES", "Run", "setup", "resolve_datasets", "choose", "registry", "set_threads"]

#: The methods every table shows by default, in table order (the headline set of the paper's tables;
#: other registered methods, e.g. later attacks, run when a notebook names them).
HEADLINE: dict[str, tuple[str, ...]] = {
    "attacks": profiles.ATTACK_NAMES,
    "detectors": ("beniful", "strip", "scale_up", "ibd_psc", "teco"),
    "eliminators": ("beniful", "ft", "fp", "nad", "anp", "ibau", "ft_pool"),
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
    """A notebook's validated parameters plus the loaded data (each data set loaded once, shared by
    every model).

    A run covers one or more data sets (``datasets``, side by side in every table and figure) and
    one or more seeds; :meth:`cases` lists the (dataset, seed) pairs in table order.
    """

    profile: str
    datasets: list[str]
    attacks: list[str]
    seeds: list[int]
    device: torch.device
    data: dict[str, tuple[ImageDataset, ImageDataset]]
    extra: dict[str, Any] = field(default_factory=dict)
    #: data sets of the profile's default set that are not on disk (named with how to get them)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def quality_checks(self) -> bool:
        """Whether the notebook asserts its quality targets (ACC, ASR, AUROC): the profile's
        ``quality_checks`` (off for ``smoke``, whose 2-epoch models meet none); the structural checks
        (rows, columns, values in range) run on every profile."""
        return profiles.get(self.profile).quality_checks

    @property
    def dataset(self) -> str:
        """The first data set (the one a single-dataset view shows)."""
        return self.datasets[0]

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def device_label(self) -> str:
        return self.device.type

    def cases(self, seeds: Iterable[int] | None = None) -> list[tuple[str, int]]:
        """Every (dataset, seed) pair of the run, data set first (the order of every table).

        Args:
            seeds: the seeds to pair with each data set (``None``: all of the run's).

        Returns:
            ``[(dataset, seed), ...]``.
        """
        chosen = self.seeds if seeds is None else list(seeds)
        return [(ds, s) for ds in self.datasets for s in chosen]

    @property
    def provenance(self) -> str:
        """The label every table and figure carries: profile / dataset(s) / device / seeds."""
        return self.provenance_of("+".join(self.datasets))

    def provenance_of(self, dataset: str) -> str:
        """The provenance label of one data set's part of the run (a panel, a per-dataset line)."""
        return (f"profile={self.profile} / dataset={dataset} / device={self.device_label} / "
                f"seeds={','.join(str(s) for s in self.seeds)}")

    def missing_note(self) -> str:
        """One line per data set of the profile's default set that this run skips (not on disk),
        with how to get it; empty when none is missing."""
        return "\n".join(f"not run: {ds} ({why})" for ds, why in self.missing.items())

    def zoo_kwargs(self, seed: int | None = None, dataset: str | None = None) -> dict[str, Any]:
        """Keyword arguments for ``zoo.get`` (same data object, so nothing is reloaded).

        Args:
            seed: the model's seed (``None``: the first of the run).
            dataset: one of ``datasets`` (``None``: the first).
        """
        ds = self._check(dataset)
        return {"dataset": ds, "profile": self.profile, "seed": self.seed if seed is None else seed,
                "device": str(self.device), "data": self.data[ds]}

    def columns(self, seed: int | None = None, dataset: str | None = None) -> dict[str, Any]:
        """Provenance columns for a result row: ``dataset``, ``profile``, ``device``, ``seed``."""
        return {"dataset": self._check(dataset), "profile": self.profile, "device": self.device_label,
                "seed": self.seed if seed is None else seed}

    def _check(self, dataset: str | None) -> str:
        if dataset is None:
            return self.dataset
        if dataset not in self.datasets:
            raise ValueError(f"dataset {dataset!r} is not part of this run; its data sets: {', '.join(self.datasets)}")
        return dataset


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


def _load_all(prof: profiles.Profile, names: list[str], optional: set[str]
              ) -> tuple[dict[str, tuple[ImageDataset, ImageDataset]], dict[str, str]]:
    """Each data set's profile share, loaded once; an ``optional`` one that is not on disk is skipped
    and returned with the message that says how to get it (any other missing one raises)."""
    data, missing = {}, {}
    for ds in names:
        try:
            data[ds] = prof.subset_data(ds, *datasets.load(ds, root=paths.data_root()))
        except datasets.DatasetNotFoundError as exc:
            if ds not in optional:
                raise
            missing[ds] = str(exc)
    return data, missing


def _default_names(prof: profiles.Profile) -> list[str]:
    """The profile's default data-set set, ``default_dataset`` first, whether on disk or not."""
    return list(dict.fromkeys([prof.default_dataset, *prof.datasets]))


def resolve_datasets(profile: str, dataset: Any = None) -> tuple[list[str], dict[str, str]]:
    """The data sets a notebook of ``profile`` runs for ``dataset``, as :func:`setup` resolves them.

    Args:
        profile: a registered profile name.
        dataset: a name, a list or a comma-separated string; ``None``: the profile's default set
            (its ``default_dataset`` and each of its ``datasets`` that is on disk).

    Returns:
        ``(names, missing)``: the data sets to run, and each default one that is not on disk with
        the message that says how to get it.
    """
    prof = profiles.get(profile)
    if dataset is not None and not (isinstance(dataset, str) and not dataset.strip()):
        return _check_datasets(dataset), {}
    names = _default_names(prof)
    missing = {}
    for ds in names[1:]:
        try:
            datasets.get(ds).loader(paths.data_root())
        except datasets.DatasetNotFoundError as exc:
            missing[ds] = str(exc)
    return [ds for ds in names if ds not in missing], missing


def _check_datasets(dataset: Any) -> list[str]:
    items = _as_list(dataset, "dataset")
    out: list[str] = []
    for d in items or []:
        name = datasets.check_name(d)
        if name not in out:
            out.append(name)
    return out


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
        dataset: a registered data set, a list of them (or a comma-separated string), or ``None``
            for the profile's default set: its ``default_dataset`` plus each of its ``datasets`` that
            is on disk (quick: mnist5k and, when installed, fashion-mnist); a missing one is skipped
            and named in ``Run.missing`` with how to get it.
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
    default = dataset is None or (isinstance(dataset, str) and not dataset.strip())
    names = _default_names(prof) if default else _check_datasets(dataset)
    chosen = choose("attacks", attacks)
    if need_attacks and not chosen:
        raise ValueError(f"no attack to run; registered attacks: {', '.join(attacks_mod.available())}")
    seeds = _check_seeds(seed)
    dev = resolve_device(device)
    set_threads()
    # the profile's share of the data (smoke: a few hundred images), cut once for every model
    optional = set(names[1:]) if default else set()
    data, missing = _load_all(prof, names, optional) if load_data else ({}, {})
    names = [ds for ds in names if ds not in missing] if load_data else names[:1] if default else names
    if plot_style:
        from .style import style  # style reads HEADLINE from this module

        style()
    return Run(prof.name, names, chosen, seeds, dev, data, dict(extra), missing)

