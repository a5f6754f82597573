"""Backdoor eliminators: ``eliminators.build("beniful", layer="layer3").repair(model, clean)``."""
from __future__ import annotations

from . import anp, beniful, fp, ft, ft_pool, ibau, nad  # noqa: F401  (register)
from .base import Eliminator
from .registry import ELIMINATORS


#: ``eliminators.build(name, **params)`` and ``eliminators.available()``: the registry's own (:class:`beniful.registry.Registry`)
build, available = ELIMINATORS.build, ELIMINATORS.available

__all__ = ["Eliminator", "ELIMINATORS", "build", "available"]
