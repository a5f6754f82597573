"""Defaults that depend on the kind of image a data set holds, with the source of each value.

A method's constructor defaults are its paper's settings for natural images (CIFAR-10, Tiny
ImageNet): random crop with 4 pixels of padding and a random horizontal flip, as BackdoorBench's
defenses train. Some of them are wrong for another kind of image: a mirrored digit is another glyph
(or none), so no defense may flip MNIST digits. Each registered data set names its *family*
(:attr:`beniful.datasets.DatasetSpec.family`), and this module holds, per family, the parameters
that differ from the constructor defaults, each with where the value comes from. The book's setup
page prints them (``beniful.notebook.family_table``). This module imports no method, so
the source digests that key cached models and repairs (:mod:`beniful.sources`) do not follow it into
every attack.

:func:`for_method` is applied wherever the package builds a method by name for a case
(:func:`beniful.evaluation.detection_row`, :func:`beniful.evaluation.elimination_row`, the
ablations), under anything the caller passes, so an explicit argument always wins::

    kwargs = method_defaults.for_method("eliminators", "ft", "mnist5k")   # {'hflip': False}
    eliminators.build("ft", **{**kwargs, "epochs": 20})
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Setting", "FAMILIES", "KINDS", "for_method", "merged"]

#: the kinds of method a default can belong to (the names of the method registries)
KINDS: tuple[str, ...] = ("attacks", "detectors", "eliminators")


@dataclass(frozen=True)
class Setting:
    """One per-family value of a method's constructor parameter.

    Attributes:
        kind: ``"detectors"`` or ``"eliminators"`` (or ``"attacks"``).
        method: the method's registered name.
        param: the constructor parameter.
        value: its value for the family's data sets.
        source: where the value comes from (a paper, BackdoorBench's config, or our own validation run).
    """

    kind: str
    method: str
    param: str
    value: Any
    source: str


_NO_FLIP = "a mirrored digit is another glyph, or none; BackdoorBench flips natural images only"

#: per image family, the settings that differ from the constructor defaults. ``natural`` has none:
#: the constructor defaults are the natural-image settings of each method's paper (BeniFul-BE's, which
#: the paper leaves open, were chosen on validation splits of digits and of Fashion-MNIST and never
#: flip, so digits need no setting of their own for it).
FAMILIES: Mapping[str, tuple[Setting, ...]] = {
    "natural": (),
    "digits": (
        Setting("eliminators", "ft", "hflip", False, _NO_FLIP),
        Setting("eliminators", "fp", "hflip", False, _NO_FLIP),
        Setting("eliminators", "nad", "hflip", False, _NO_FLIP),
        Setting("eliminators", "anp", "hflip", False, _NO_FLIP),
    ),
}


def _family(family: str) -> tuple[Setting, ...]:
    if family not in FAMILIES:
        raise ValueError(f"unknown image family {family!r}; valid families: {', '.join(FAMILIES)}")
    return FAMILIES[family]


def for_method(kind: str, method: str, dataset: str | None) -> dict[str, Any]:
    """The per-family keyword arguments of one method on one data set.

    Args:
        kind: one of :data:`KINDS`.
        method: the method's registered name (any spelling the registry accepts).
        dataset: a registered data set name; ``None`` or an unregistered name (a user's own data
            in a hand-made :class:`~beniful.case.Case`): the constructor defaults, i.e. ``{}``.

    Returns:
        ``{param: value}`` for the parameters the data set's family sets (often empty).

    Raises:
        ValueError: ``kind`` is not one of :data:`KINDS`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    from . import datasets

    if dataset is None or dataset not in datasets.DATASETS:
        return {}
    name = method.replace("_", "-").lower()
    return {s.param: s.value for s in _family(datasets.get(dataset).family)
            if s.kind == kind and s.method.replace("_", "-") == name}


def merged(kind: str, method: str, dataset: str | None, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` over the family's settings: what a method built by name for ``dataset`` receives.

    Args:
        kind: one of :data:`KINDS`.
        method: the method's registered name.
        dataset: the case's data set (see :func:`for_method`).
        given: the caller's keyword arguments; each one wins over the family's value.

    Returns:
        A new dict.
    """
    return {**for_method(kind, method, dataset), **dict(given)}
