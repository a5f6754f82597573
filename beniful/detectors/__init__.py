"""Backdoor input detectors: ``detectors.build("beniful", layer="layer3").fit(model, clean)``."""
from __future__ import annotations

import importlib

from .base import Detector
from .registry import DETECTORS

for _mod in ("beniful", "strip", "scale_up", "ibd_psc", "teco"):
    try:
        importlib.import_module(f"{__name__}.{_mod}")
    except ModuleNotFoundError as _exc:  # a module still being written
        if _exc.name != f"{__name__}.{_mod}":
            raise


def build(name: str, **kwargs) -> Detector:
    """Build a detector by name; unknown names raise a ValueError listing the valid ones."""
    return DETECTORS.build(name, **kwargs)


def available() -> list[str]:
    return DETECTORS.available()


__all__ = ["Detector", "DETECTORS", "build", "available"]
