"""Blended (Chen et al., 2017): alpha-blend a fixed pattern image over the input.

The pattern is uniform noise drawn from ``pattern_seed`` (Chen et al.'s random-pattern variant), so
no third-party image is shipped. For other patterns pass ``pattern`` (C x H x W in [0, 1]); it is
copied at build time and keyed by the SHA-256 of its dtype, shape and bytes, so two patterns never
share a cached model unless they are the same tensor content.
"""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from ..utils import check_fraction
from .base import Attack
from .registry import ATTACKS


def _content_sha256(t: Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and bytes: equal exactly when the content is equal (a sum
    is not: any permutation of the pixels has the same one)."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, whatever the dtype
    return h.hexdigest()


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
        if pattern is not None and not isinstance(pattern, Tensor):
            raise TypeError(f"pattern must be a torch.Tensor (C x H x W in [0, 1]) or None, got {type(pattern).__name__}")
        # a copy: a later in-place change of the caller's tensor would otherwise change the attack
        # behind its cache key's back
        self._user_pattern = pattern.detach().cpu().clone().contiguous() if pattern is not None else None
        self._pattern_sha256 = _content_sha256(self._user_pattern) if self._user_pattern is not None else None

    def params(self) -> dict:
        p = {"alpha": self.alpha, "pattern_seed": self.pattern_seed}
        if self._pattern_sha256 is not None:
            p["pattern_sha256"] = self._pattern_sha256
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
