"""Backdoor input detectors: ``detectors.build("beniful", layer="layer3").fit(model, clean)``."""
from __future__ import annotations

from . import autoencoder, beniful, ibd_psc, scale_up, strip, teco  # noqa: F401  (register)
from .base import Detector
from .registry import DETECTORS


#: ``detectors.build(name, **params)`` and ``detectors.available()``: the registry's own (:class:`beniful.registry.Registry`)
build, available = DETECTORS.build, DETECTORS.available

__all__ = ["Detector", "DETECTORS", "build", "available"]
