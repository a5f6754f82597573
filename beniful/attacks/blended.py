"""Blended (Chen et al., 2017): alpha-blend a fixed pattern image over the input.

The pattern is uniform noise drawn from ``pattern_seed`` (Chen et al.'s random-pattern variant), so
no third-party image is shipped. For other patterns pass ``pattern`` (C x H x W in [0, 1]).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..utils import check_fraction
from .base import Attack
from .registry import ATTACKS


@ATTACKS.register("blended")
class Blended(Attack):
    name = "blended"
    #: a pattern tensor is recorded by content in params(), not as a value
    params_exclude = Attack.params_exclude | {"pattern"}

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0, alpha: float = 0.2,
                 pattern_seed: int = 1234, pattern: Tensor | None = None) -> None:
        super().__init__(target, rate, seed)
        self.alpha = check_fraction(alpha, "alpha")
        self.pattern_seed = int(pattern_seed)
        self._user_pattern = pattern

    def params(self) -> dict:
        p = {"alpha": self.alpha, "pattern_seed": self.pattern_seed}
        if self._user_pattern is not None:
            p["pattern_sum"] = round(float(self._user_pattern.double().sum()), 6)
        return p

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        if self._user_pattern is not None:
            if tuple(self._user_pattern.shape) != tuple(shape):
                raise ValueError(f"pattern has shape {tuple(self._user_pattern.shape)}, images {shape}")
            self.pattern = self._user_pattern.float().clamp(0, 1)
        else:
            g = torch.Generator().manual_seed(self.pattern_seed)
            self.pattern = torch.rand(shape, generator=g)

    def _apply(self, x: Tensor) -> Tensor:
        return (1 - self.alpha) * x + self.alpha * self.pattern
