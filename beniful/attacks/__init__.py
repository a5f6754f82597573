"""Backdoor attacks: ``attacks.build("badnets", target=0, rate=0.1, seed=0)``; ``attacks.available()``."""
from __future__ import annotations

from .base import Attack
from .registry import ATTACKS
from . import badnets, blended, iad, sig, wanet  # noqa: F401  (register)


def build(name: str, **kwargs) -> Attack:
    """Build an attack by name; unknown names raise a ValueError listing the valid ones."""
    return ATTACKS.build(name, **kwargs)


def available() -> list[str]:
    return ATTACKS.available()


__all__ = ["Attack", "ATTACKS", "build", "available"]
