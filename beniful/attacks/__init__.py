"""Backdoor attacks: ``attacks.build("badnets", target=0, rate=0.1, seed=0)``; ``attacks.available()``."""
from __future__ import annotations

from .base import Attack
from .registry import ATTACKS
from . import adaptive, adv_embedding, badnets, blended, iad, sig, wanet  # noqa: F401  (register)


#: ``attacks.build(name, **params)`` and ``attacks.available()``: the registry's own (:class:`beniful.registry.Registry`)
build, available = ATTACKS.build, ATTACKS.available

__all__ = ["Attack", "ATTACKS", "build", "available"]
