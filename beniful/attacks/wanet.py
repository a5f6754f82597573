"""WaNet (Nguyen & Tran, ICLR 2021): an imperceptible smooth warping field as the trigger.

A random ``k x k`` control grid (fixed by ``grid_seed``) is upsampled to the image size and scaled
by ``s``; ``grid_sample`` warps the image with it. Noise mode: during training, an extra
``cross_ratio x rate`` share of each batch is warped with the trigger field *plus* random noise
and keeps its true label, which forces the model to learn the exact field rather than any warp.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Attack
from .registry import ATTACKS


@ATTACKS.register("wanet")
class WaNet(Attack):
    """Warping-based trigger with noise mode (see the module docstring).

    Args:
        target, rate, seed: as for every :class:`~beniful.attacks.base.Attack`.
        k: side of the random control grid (>= 2).
        s: strength of the warp (positive); the field moves a pixel by about ``s / 2`` pixels.
        cross_ratio: noise-mode samples per poisoned sample in each training batch (>= 0).
        grid_rescale: factor on the warped sampling grid (1 = none).
        grid_seed: seeds the control grid, so the trigger is the same for every model.

    Raises:
        ValueError: ``k`` < 2, a non-positive ``s`` or a negative ``cross_ratio``.
    """

    name = "wanet"

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0, k: int = 4, s: float = 0.5,
                 cross_ratio: float = 2.0, grid_rescale: float = 1.0, grid_seed: int = 1234) -> None:
        super().__init__(target, rate, seed)
        if not isinstance(k, int) or k < 2:
            raise ValueError(f"k must be an integer >= 2, got {k!r}")
        if s <= 0:
            raise ValueError(f"s must be positive, got {s!r}")
        if cross_ratio < 0:
            raise ValueError(f"cross_ratio must be >= 0, got {cross_ratio!r}")
        self.k, self.s, self.cross_ratio, self.grid_rescale = k, float(s), float(cross_ratio), float(grid_rescale)
        self.grid_seed = int(grid_seed)

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        _, h, w = shape
        if h != w:
            raise ValueError(f"WaNet expects square images, got {h}x{w}")
        g = torch.Generator().manual_seed(self.grid_seed)
        ctrl = torch.rand(1, 2, self.k, self.k, generator=g) * 2 - 1
        ctrl = ctrl / ctrl.abs().mean()
        noise = F.interpolate(ctrl, size=h, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        lin = torch.linspace(-1, 1, h)
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        identity = torch.stack((gx, gy), dim=2)[None]
        grid = (identity + self.s * noise / h) * self.grid_rescale
        self.grid = grid.clamp(-1, 1)

    def _warp(self, x: Tensor, grid: Tensor) -> Tensor:
        return F.grid_sample(x, grid.expand(len(x), -1, -1, -1), align_corners=True)

    def _apply(self, x: Tensor) -> Tensor:
        return self._warp(x, self.grid)

    def noise_warp(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The noise-mode warp: trigger field plus per-sample uniform noise of one pixel.

        Args:
            x: float images in [0, 1], ``N x C x H x W`` (square).
            generator: source of the noise (on ``x``'s device).

        Returns:
            The warped images, same shape, in [0, 1].
        """
        self.setup(tuple(x.shape[1:]), x.device)  # type: ignore[arg-type]
        h = x.shape[-1]
        noise = torch.rand(len(x), h, h, 2, generator=generator, device=x.device) * 2 - 1
        grid = (self.grid + noise / h).clamp(-1, 1)
        return F.grid_sample(x, grid, align_corners=True).clamp(0, 1)

    def training_batch(self, x, y, poison_mask, generator=None):
        """Poison the ``poison_mask`` items and noise-warp ``cross_ratio x rate`` of the others.

        Args:
            x: a float training batch in [0, 1].
            y: its labels.
            poison_mask: which items are poisoned samples.
            generator: source of the choice of noise-mode items and of their noise.

        Returns:
            ``(x, y, None)``; noise-mode items keep their true label; there is no extra loss.
        """
        x, y, _ = super().training_batch(x, y, poison_mask, generator)
        if self.cross_ratio > 0:
            free = torch.nonzero(~poison_mask).flatten()
            n_cross = min(len(free), int(round(self.cross_ratio * self.rate * len(x))))
            if n_cross > 0:
                pick = free[torch.randperm(len(free), generator=generator, device=free.device)[:n_cross]]
                x = x.clone()
                with torch.no_grad():
                    x[pick] = self.noise_warp(x[pick], generator)
        return x, y, None
