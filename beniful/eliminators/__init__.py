"""Backdoor eliminators: ``eliminators.build("beniful", layer="layer3").repair(model, clean)``."""
from __future__ import annotations

import importlib

from .base import Eliminator
from .registry import ELIMINATORS

for _mod in ("beniful", "ft", "fp", "nad", "anp", "ibau"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:  # a module still being written
        if _exc.name != f"{__name__}.{_mod}":
            raise


def build(name: str, **kwargs) -> Eliminator:
    """Build an eliminator by name; unknown names raise a ValueError listing the valid ones."""
    return ELIMINATORS.build(name, **kwargs)


def available() -> list[str]:
    return ELIMINATORS.available()


__all__ = ["Eliminator", "ELIMINATORS", "build", "available"]
