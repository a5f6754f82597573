"""SIG (Barni et al., 2019): clean-label attack with a horizontal sinusoidal signal.

``x + delta/255 * sin(2 pi j f / W)`` on every row; only target-class training images are
poisoned and their labels are kept, so the model learns "sinusoid => target".
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .base import Attack
from .registry import ATTACKS


@ATTACKS.register("sig")
class SIG(Attack):
    """Clean-label sinusoidal signal: ``x + delta/255 * sin(2 pi j frequency / W)`` on every row.

    Args:
        target: the target class every triggered input is sent to.
        rate: share of the training set's size that is poisoned, in (0, 1), drawn
            among the target class (at most every target-class image).
        seed: seeds the choice of poisoned samples.
        delta: amplitude in pixel units (0, 255].
        frequency: periods across the image width.

    Raises:
        ValueError: ``delta`` outside (0, 255] or a non-positive ``frequency``.
    """

    name = "sig"
    clean_label = True

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0, delta: float = 40.0,
                 frequency: float = 6.0) -> None:
        super().__init__(target, rate, seed)
        if not 0 < delta <= 255:
            raise ValueError(f"delta must be in (0, 255] (pixel units), got {delta!r}")
        if frequency <= 0:
            raise ValueError(f"frequency must be positive, got {frequency!r}")
        self.delta, self.frequency = float(delta), float(frequency)

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        _, _, w = shape
        j = torch.arange(w, dtype=torch.float32)
        self.signal = (self.delta / 255.0) * torch.sin(2 * math.pi * j * self.frequency / w).view(1, 1, 1, w)

    def _apply(self, x: Tensor) -> Tensor:
        return x + self.signal
