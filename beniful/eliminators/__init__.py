"""Backdoor eliminators: ``eliminators.build("beniful", layer="layer3").repair(model, clean)``."""
from __future__ import annotations

from . import anp, beniful, fp, ft, ibau, nad  # noqa: F401  (register)
from .base import Eliminator
from .registry import ELIMINATORS


def build(name: str, **kwargs) -> Eliminator:
    """Build an eliminator by name.

    Args:
        name: one of :func:`available` (``-`` and ``_`` are interchangeable).
        **kwargs: the eliminator's parameters.

    Returns:
        The eliminator.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or an invalid parameter.
    """
    return ELIMINATORS.build(name, **kwargs)


def available() -> list[str]:
    """The registered names, sorted.

    Returns:
        A list of names.
    """
    return ELIMINATORS.available()


__all__ = ["Eliminator", "ELIMINATORS", "build", "available"]
