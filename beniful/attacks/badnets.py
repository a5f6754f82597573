"""BadNets (Gu et al., 2017): a small solid patch stamped on the image, label flipped to the target."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import Attack
from .registry import ATTACKS

POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left")


@ATTACKS.register("badnets")
class BadNets(Attack):
    """``patch_size`` x ``patch_size`` square of value ``value`` at ``position`` (BackdoorBench: 3x3 white, bottom-right).

    Args:
        target, rate, seed: as for every :class:`~beniful.attacks.base.Attack`.
        patch_size: side of the square patch in pixels.
        value: the patch's pixel value in [0, 1] (1 = white), on every channel.
        position: the corner: ``bottom_right``, ``bottom_left``, ``top_right`` or ``top_left``.

    Raises:
        ValueError: a non-positive ``patch_size``, a ``value`` outside [0, 1] or an unknown ``position``.
    """

    name = "badnets"

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0, patch_size: int = 3,
                 value: float = 1.0, position: str = "bottom_right") -> None:
        super().__init__(target, rate, seed)
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"value must be in [0, 1], got {value!r}")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}; got {position!r}")
        self.patch_size, self.value, self.position = patch_size, float(value), position

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        c, h, w = shape
        if self.patch_size > min(h, w):
            raise ValueError(f"patch_size {self.patch_size} does not fit images of {h}x{w}")
        mask = torch.zeros(1, 1, h, w, device=device)
        p = self.patch_size
        rows = slice(h - p, h) if self.position.startswith("bottom") else slice(0, p)
        cols = slice(w - p, w) if self.position.endswith("right") else slice(0, p)
        mask[..., rows, cols] = 1.0
        self.mask = mask

    def _apply(self, x: Tensor) -> Tensor:
        return x * (1 - self.mask) + self.value * self.mask
