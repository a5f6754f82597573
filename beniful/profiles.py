"""Named experiment profiles: ``quick`` (CPU, embedded data, minutes) and ``paper`` (GPU, BackdoorBench).

A profile fixes the model width, the training recipe, the defender's clean-data share and any
per-attack parameter that the quick setting needs changed. Every value is listed in the book's
setup page; the ``paper`` profile is BackdoorBench's setting, the ``quick`` one our own choice.

Profiles are entries of the :data:`PROFILES` registry, so a new one is a registration::

    profiles.register(profiles.Profile(name="smoke", description="...", width=4, train=TrainConfig(epochs=1)))
    zoo.get("badnets", profile="smoke")
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

from .registry import Registry
from .training import TrainConfig

__all__ = ["Profile", "PROFILES", "register", "get", "available", "ATTACK_NAMES"]

#: the headline attacks of every table, in table order
ATTACK_NAMES: tuple[str, ...] = ("badnets", "blended", "sig", "wanet", "iad")


@dataclass(frozen=True)
class Profile:
    """One experiment setting: the model width, the training recipe and the threat model's numbers.

    Attributes:
        name: the name to register and list.
        description: one line for the book's setup page.
        width: channel width of the PreAct-ResNet-18 (64 = the standard model).
        train: the training recipe (per-dataset overrides in ``dataset_train``).
    """

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
        """The training recipe for one dataset.

        Args:
            dataset: a dataset name as registered (``"tiny-imagenet"``).

        Returns:
            ``train`` with the dataset's overrides from ``dataset_train`` applied.
        """
        return replace(self.train, **dict(self.dataset_train.get(dataset, {})))

    def attack_kwargs(self, attack: str) -> dict[str, Any]:
        """Keyword arguments for ``attacks.build(attack, ...)`` in this profile.

        Args:
            attack: an attack name.

        Returns:
            ``target`` and ``rate`` of the profile, overridden by its ``attack_params[attack]``.
        """
        kw: dict[str, Any] = {"target": self.target, "rate": self.rate}
        kw.update(self.attack_params.get(attack, {}))
        return kw


#: every profile :func:`get` knows, by name (:func:`register` adds one)
PROFILES: Registry[Profile] = Registry("profile")


def register(profile: Profile) -> Profile:
    """Add ``profile`` under ``profile.name`` and return it: :func:`get`, ``zoo.get(profile=...)``
    and the notebooks then accept the name. A name already taken (in any ``-``/``_`` spelling)
    raises a ValueError; anything but a :class:`Profile` a TypeError.

    Args:
        profile: the new profile; its ``name`` is the key.

    Returns:
        ``profile`` itself, so a definition can be registered where it is written.

    Raises:
        ValueError: the name is already registered.
        TypeError: ``profile`` is not a :class:`Profile`.
    """
    return PROFILES.add_spec(profile, Profile)


register(Profile(
    name="quick",
    description="CPU minutes: embedded mnist5k, PreAct-ResNet-18 at width 8, 8 epochs",
    width=8,
    train=TrainConfig(epochs=8, batch_size=128, lr=0.05, crop_padding=2, hflip=False),
    clean_fraction=0.05,
    attack_params=MappingProxyType({
        "sig": {
            # rate 0.1 = all 400 target digits carry the sinusoid, so a clean '0' is never seen (ACC 0.88)
            "rate": 0.05,
            # on black MNIST background only the positive half-wave survives; 40 gave ASR 0.10 at 8 epochs
            "delta": 100.0,
        },
        "wanet": {
            # a 28x28 digit moves by ~s/2 pixels; s=0.5 is invisible to a narrow model in 8 epochs
            "s": 3.0,
            # noise mode kept, but at ratio 2 the jittered copies drown the field in 8 epochs (ASR 0.38-0.53)
            "cross_ratio": 0.5,
        },
        "iad": {
            # 5 of the paper's 25 mask pre-training epochs: masks already meet the density bound (5 s CPU)
            "mask_epochs": 5,
            # half-width generators: the trigger nets stay < 20% of a width-8 PreAct-ResNet step on CPU
            "gen_width": 8,
            # 0.032 of 28x28 is ~25 pixels, half on the strokes; bigger masks are learnt within 8 epochs
            "mask_density": 0.064,
            # at 1 the diversity loss pulls G(x) towards x (dim, invisible triggers): ASR 0.51-0.89
            "lambda_div": 0.1,
        },
    }),
    default_dataset="mnist5k",
))
register(Profile(
    name="paper",
    description="GPU: BackdoorBench setting, PreAct-ResNet-18 (width 64), SGD 0.01 cosine, 100 epochs",
    train=TrainConfig(epochs=100, batch_size=128, lr=0.01, crop_padding=4, hflip=True),
    width=64,
    clean_fraction=0.05,
    dataset_train=MappingProxyType({"tiny-imagenet": {"epochs": 200}, "mnist5k": {"hflip": False}}),
    default_dataset="cifar10",
))


def available() -> list[str]:
    """The registered profile names.

    Returns:
        Sorted names, e.g. ``["paper", "quick"]``.
    """
    return PROFILES.available()


def get(name: str | Profile) -> Profile:
    """A registered profile by name; a :class:`Profile` object is returned as is (custom settings).

    Args:
        name: one of :func:`available` (case and ``-``/``_`` ignored), or a Profile.

    Returns:
        The profile.

    Raises:
        ValueError: unknown name; the message lists the valid ones.
    """
    if isinstance(name, Profile):
        return name
    if name not in PROFILES:  # worded as before the registry ("valid profiles"), which notebooks match
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(available())}")
    return PROFILES.get(name)
