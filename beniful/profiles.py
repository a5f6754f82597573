"""Named experiment profiles: ``quick`` (CPU, embedded data, minutes) and ``paper`` (GPU, METHOD.md).

A profile fixes the model width, the training recipe, the defender's clean-data share and any
per-attack parameter that the quick setting needs changed. Every value is listed in the book's
setup page; nothing here is the paper's own number unless METHOD.md says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from .training import TrainConfig

__all__ = ["Profile", "PROFILES", "get", "available", "ATTACK_NAMES"]

#: the headline attacks of every table, in table order
ATTACK_NAMES: tuple[str, ...] = ("badnets", "blended", "sig", "wanet", "iad")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    width: int
    train: TrainConfig
    #: share of the training set the defender holds as clean data
    clean_fraction: float = 0.05
    #: per-attack parameter overrides (merged over each attack's defaults)
    attack_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: per-dataset TrainConfig overrides (e.g. 200 epochs on Tiny ImageNet)
    dataset_train: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    default_dataset: str = "mnist5k"
    target: int = 0
    rate: float = 0.1

    def train_config(self, dataset: str) -> TrainConfig:
        return replace(self.train, **dict(self.dataset_train.get(dataset, {})))

    def attack_kwargs(self, attack: str) -> dict[str, Any]:
        """Keyword arguments for ``attacks.build(attack, ...)`` in this profile."""
        kw: dict[str, Any] = {"target": self.target, "rate": self.rate}
        kw.update(self.attack_params.get(attack, {}))
        return kw


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="CPU minutes: embedded mnist5k, PreAct-ResNet-18 at width 8, 8 epochs",
        width=8,
        train=TrainConfig(epochs=8, batch_size=128, lr=0.05, crop_padding=2, hflip=False),
        clean_fraction=0.05,
        attack_params=MappingProxyType({
            # all 400 target-class digits carrying the sinusoid makes the clean '0' unlearnable
            # (BackdoorBench's SIG loses ~9 points of ACC for the same reason); poison half of them
            "sig": {"rate": 0.05},
            # a 28x28 digit moves by ~s/2 pixels; s=0.5 is invisible to a narrow model in 8 epochs
            "wanet": {"s": 3.0},
        }),
        default_dataset="mnist5k",
    ),
    "paper": Profile(
        name="paper",
        description="GPU: BackdoorBench setting, PreAct-ResNet-18 (width 64), SGD 0.01 cosine, 100 epochs",
        width=64,
        train=TrainConfig(epochs=100, batch_size=128, lr=0.01, crop_padding=4, hflip=True),
        clean_fraction=0.05,
        dataset_train=MappingProxyType({"tiny-imagenet": {"epochs": 200}, "mnist5k": {"hflip": False}}),
        default_dataset="cifar10",
    ),
}


def available() -> list[str]:
    return sorted(PROFILES)


def get(name: str | Profile) -> Profile:
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(available())}")
    return PROFILES[name]
