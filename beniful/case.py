"""The record the evaluation protocol works on: one suspect model, its attack and its data.

:mod:`beniful.evaluation` and :mod:`beniful.ablations` take a :class:`Case`, not a model trained by
the package's zoo, so any classifier can be evaluated under the same protocol::

    from beniful import attacks, evaluation
    from beniful.case import Case
    atk = attacks.build("badnets", target=0).setup((3, 32, 32))    # the trigger your model learnt
    case = Case(model=my_model, attack=atk, test=my_test, clean=my_clean)
    row = evaluation.detection_row(case, "beniful")

:class:`beniful.zoo.TrainedModel` is a ``Case`` with the zoo's provenance added.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from .attacks.base import Attack
from .datasets import ImageDataset, stratified_sample, stratified_split
from .utils import check_fraction

__all__ = ["Case", "defender_split"]


def defender_split(train: ImageDataset, poisoned: Tensor | None, fraction: float, seed: int) -> ImageDataset:
    """The defender's clean data: a stratified subset of ``train`` holding ``fraction`` of its size,
    never one of the ``poisoned`` indices. A share under half an image per class (many classes,
    few images each), which per-class rounding would leave empty, is drawn as exactly
    ``round(fraction * len(train))`` images (at least one) over as many classes
    (:func:`~beniful.datasets.stratified_sample`).

    Args:
        train: the training set (clean copies of its images).
        poisoned: indices into ``train`` the attacker poisoned, excluded; ``None`` or empty: none.
        fraction: the subset's size as a share of ``len(train)``, in (0, 1].
        seed: fixes the draw.

    Returns:
        The subset, as an :class:`~beniful.datasets.ImageDataset`.
    """
    check_fraction(fraction, "clean fraction")
    keep = torch.ones(len(train), dtype=torch.bool)
    if poisoned is not None and len(poisoned):
        keep[poisoned] = False
    clean_idx = torch.nonzero(keep).flatten()
    share = min(0.999, fraction * len(train) / len(clean_idx))
    part, _ = stratified_split(train.targets[clean_idx], share, seed + 7919)
    if len(part) == 0:  # under half an image per class (many classes, few images): exactly the share instead
        want = min(len(clean_idx), max(1, round(fraction * len(train))))
        part = stratified_sample(train.targets[clean_idx], want, seed + 7919)
    return train.subset(clean_idx[part])


@dataclass
class Case:
    """One suspect model and what the protocol needs around it.

    Attributes:
        model: the classifier under test (any ``nn.Module`` taking images in [0, 1]).
        attack: the attack whose trigger the model may carry (it makes the triggered test inputs);
            ``None`` for a model without a known trigger, for which detection has nothing to score.
        test: the labelled test set; the natural mix and the incoming pool are made from it.
        clean: the defender's clean data, the only labelled data any defense gets (an
            :class:`~beniful.datasets.ImageDataset`, a torch ``Dataset``, a ``DataLoader`` or an
            ``(x, y)`` tuple, as every ``fit`` and ``repair`` accepts).
        train: the training set, needed only by sweeps over the clean-data fraction
            (:meth:`clean_data`); ``None`` when unknown.
        poisoned: indices into ``train`` the attacker poisoned, kept out of any clean set drawn from
            it; ``None`` when unknown or none.
        seed: seeds every split and every method built for this case.
        labels: columns added to every result row (``dataset``, ``profile``, ``device`` and any other).
        key: a stable identity of the model's weights; repaired models are cached under it (``None``:
            repairs are not cached).
    """

    model: nn.Module
    attack: Attack | None
    test: ImageDataset
    clean: Any
    train: ImageDataset | None = None
    poisoned: Tensor | None = None
    seed: int = 0
    labels: dict[str, Any] = field(default_factory=dict)
    key: str | None = None

    @property
    def attack_name(self) -> str:
        """The attack's registry name, or ``"none"``."""
        return self.attack.name if self.attack is not None else "none"

    @property
    def dataset(self) -> str:
        """The data set's name from ``labels`` (else the test set's own name, else ``"custom"``)."""
        return str(self.labels.get("dataset") or self.test.name or "custom")

    def row(self) -> dict[str, Any]:
        """The columns that start every result row: data set, attack, seed, profile, device, and any
        other label."""
        return {"dataset": self.dataset, "attack": self.attack_name, "seed": self.seed,
                "profile": self.labels.get("profile", "custom"), "device": self.labels.get("device", "?"),
                **{k: v for k, v in self.labels.items() if k not in ("dataset", "profile", "device")}}

    def clean_data(self, fraction: float | None = None, seed: int | None = None) -> Any:
        """The defender's clean data: :attr:`clean`, or for another ``fraction`` a new draw from the
        training set (:func:`defender_split`), as the clean-fraction sweeps need.

        Args:
            fraction: share of the training set; ``None``: :attr:`clean` as it is.
            seed: the draw's seed (default :attr:`seed`).

        Returns:
            The clean data.

        Raises:
            ValueError: a ``fraction`` was asked for but the case has no training set.
        """
        if fraction is None:
            return self.clean
        if self.train is None:
            raise ValueError("this Case has no training set to draw another clean fraction from; "
                             "pass train= (and poisoned=) when building it")
        return defender_split(self.train, self.poisoned, fraction, self.seed if seed is None else seed)

    def replace(self, **changes: Any) -> "Case":
        """A copy with ``changes`` applied (e.g. a smaller test set), of the same class."""
        return replace(self, **changes)
