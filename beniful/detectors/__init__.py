"""Backdoor input detectors: ``detectors.build("beniful", layer="layer3").fit(model, clean)``."""
from __future__ import annotations

from . import beniful, ibd_psc, scale_up, strip, teco  # noqa: F401  (register)
from .base import Detector
from .registry import DETECTORS


def build(name: str, **kwargs) -> Detector:
    """Build a detector by name.

    Args:
        name: one of :func:`available` (``-`` and ``_`` are interchangeable).
        **kwargs: the detector's parameters.

    Returns:
        An unfitted detector.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or an invalid parameter.
    """
    return DETECTORS.build(name, **kwargs)


def available() -> list[str]:
    """The registered names, sorted.

    Returns:
        A list of names.
    """
    return DETECTORS.available()


__all__ = ["Detector", "DETECTORS", "build", "available"]
