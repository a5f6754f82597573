"""Adaptive-Blend and Adaptive-Patch (Qi et al., "Revisiting the Assumption of Latent Separability for
Backdoor Defenses", ICLR 2023): attacks built to keep triggered and benign features close.

Two devices make a backdoor's features hard to separate from benign ones:

- the model only ever sees a *partial* trigger at training time (Blend: a random half of the
  pattern's pieces at a lower opacity; Patch: a random subset of several faint patches) and the
  whole trigger only at test time, so no single strong feature direction is learnt for it;
- *cover* samples carry the same partial trigger but keep their true label (a fixed set of
  training samples, ``cover_indices``), so the trigger alone is not "the target class" and the
  model has to combine it weakly with the content.

Qi et al. poison 0.3 % and cover 0.3 % of CIFAR-10 (the class defaults here, which the paper profile
uses); the quick profile raises both only as far as its 8- to 16-epoch CPU budget needs (the book's
adaptive-attacks page gives the values and what was tried). The patterns are drawn from a seed
(uniform noise), so no third-party image is shipped.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..utils import check_fraction
from .base import Attack
from .registry import ATTACKS

__all__ = ["CoverAttack", "AdaptiveBlend", "AdaptivePatch"]


class CoverAttack(Attack):
    """An all-to-one attack with cover samples and a partial trigger at training time.

    Subclasses implement ``_apply`` (the whole trigger, test time) and ``_partial`` (the training-time
    trigger, a fresh random part per sample).

    Args:
        target, rate, seed: as for every :class:`~beniful.attacks.base.Attack` (``rate``: the payload
            samples, relabelled to the target).
        cover_rate: share of the training set that carries the partial trigger and keeps its label,
            in [0, 1); drawn from the samples that are not poisoned.

    Raises:
        ValueError: a ``cover_rate`` outside [0, 1), or poison and cover shares above the whole set.
    """

    def __init__(self, target: int = 0, rate: float = 0.003, seed: int = 0, cover_rate: float = 0.003) -> None:
        super().__init__(target, rate, seed)
        self.cover_rate = check_fraction(cover_rate, "cover_rate", low_open=False, high_open=True)
        if self.rate + self.cover_rate >= 1:
            raise ValueError(f"rate + cover_rate must stay below 1, got {self.rate} + {self.cover_rate}")

    def cover_indices(self, y: Tensor) -> Tensor:
        """``round(cover_rate * N)`` samples of any class outside ``poison_indices``, drawn with ``seed``.

        Args:
            y: the training labels.

        Returns:
            Sorted int64 indices, disjoint from the poisoned ones.
        """
        y = torch.as_tensor(y).cpu()
        n = int(round(self.cover_rate * len(y)))
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        free = torch.ones(len(y), dtype=torch.bool)
        free[self.poison_indices(y)] = False
        pool = torch.nonzero(free).flatten()
        g = torch.Generator().manual_seed(self.seed + 7919)  # another stream than the poisoned draw
        return torch.sort(pool[torch.randperm(len(pool), generator=g)[: min(n, len(pool))]]).values

    def _partial(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def training_batch(self, x: Tensor, y: Tensor, poison_mask: Tensor, generator: torch.Generator | None = None,
                       cover_mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Stamp the partial trigger on the poisoned and cover items; relabel the poisoned ones only.

        Args:
            x: a float training batch in [0, 1].
            y: its labels.
            poison_mask: which items are poisoned (relabelled to the target).
            generator: source of each item's random part of the trigger.
            cover_mask: which items are cover samples (trigger, true label); ``None``: none.

        Returns:
            ``(x, y, None)``.
        """
        marked = poison_mask if cover_mask is None else poison_mask | cover_mask
        if not bool(marked.any()):
            return x, y, None
        self.setup(tuple(x.shape[1:]), x.device)  # type: ignore[arg-type]
        x, y = x.clone(), y.clone()
        with torch.no_grad():
            x[marked] = self._partial(x[marked], generator).clamp(0, 1)
        y[poison_mask] = self.target
        return x, y, None


@ATTACKS.register("adaptive_blend")
class AdaptiveBlend(CoverAttack):
    """Adaptive-Blend: a noise pattern cut into ``pieces`` grid cells; training samples get a random
    ``1 - mask_rate`` of the cells at ``train_alpha``, test inputs the whole pattern at ``alpha``.

    Args:
        target, rate, seed, cover_rate: as for :class:`CoverAttack`.
        alpha: test-time opacity of the whole pattern.
        train_alpha: training-time opacity (Qi et al.: 0.15 against 0.2 at test time).
        pieces: grid cells of the pattern, a square number (16 = 4 x 4, the paper's).
        mask_rate: share of the cells left out of each training sample (the paper's: half).
        pattern_seed: seeds the noise pattern, so the trigger is the same for every model.

    Raises:
        ValueError: opacities outside (0, 1], ``pieces`` not a square >= 4, ``mask_rate`` outside [0, 1).
    """

    name = "adaptive_blend"

    def __init__(self, target: int = 0, rate: float = 0.003, seed: int = 0, cover_rate: float = 0.003,
                 alpha: float = 0.2, train_alpha: float = 0.15, pieces: int = 16, mask_rate: float = 0.5,
                 pattern_seed: int = 4321) -> None:
        super().__init__(target, rate, seed, cover_rate)
        self.alpha = check_fraction(alpha, "alpha", low_open=True)
        self.train_alpha = check_fraction(train_alpha, "train_alpha", low_open=True)
        side = math.isqrt(pieces) if isinstance(pieces, int) and pieces > 0 else 0
        if isinstance(pieces, bool) or side < 2 or side * side != pieces:
            raise ValueError(f"pieces must be a square number >= 4 (4, 9, 16, ...), got {pieces!r}")
        self.pieces = pieces
        self.mask_rate = check_fraction(mask_rate, "mask_rate", low_open=False, high_open=True)
        self.pattern_seed = int(pattern_seed)

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        _, h, w = shape
        g = torch.Generator().manual_seed(self.pattern_seed)
        self.pattern = torch.rand(shape, generator=g)
        side = math.isqrt(self.pieces)
        rows = torch.arange(h) * side // h
        cols = torch.arange(w) * side // w
        self.cell = (rows[:, None] * side + cols[None, :]).long()  # H x W: the grid cell of each pixel

    def _apply(self, x: Tensor) -> Tensor:
        return (1 - self.alpha) * x + self.alpha * self.pattern

    def _partial(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        keep_n = self.pieces - int(round(self.mask_rate * self.pieces))
        order = torch.rand(len(x), self.pieces, generator=generator, device=x.device).argsort(1)
        keep = torch.zeros(len(x), self.pieces, device=x.device)
        keep.scatter_(1, order[:, :keep_n], 1.0)
        m = keep[:, self.cell][:, None]  # N x 1 x H x W
        a = self.train_alpha * m
        return (1 - a) * x + a * self.pattern


@ATTACKS.register("adaptive_patch")
class AdaptivePatch(CoverAttack):
    """Adaptive-Patch: ``n_patches`` small noise patches at fixed places; training samples get a
    random ``train_patches`` of them at ``train_alpha``, test inputs all of them at ``alpha``.

    The patches sit inset from the four corners and, beyond four, along the edges' midpoints (the
    image's content is mostly central on the quick data sets).

    Args:
        target, rate, seed, cover_rate: as for :class:`CoverAttack`.
        n_patches: patches in the whole trigger, 2 to 8.
        train_patches: patches on each training sample, 1 to ``n_patches``.
        patch_size: side of each patch in pixels.
        alpha: test-time opacity (full by default).
        train_alpha: training-time opacity (low: the model must not learn any one patch as the trigger).
        pattern_seed: seeds the patches' noise.

    Raises:
        ValueError: counts or opacities out of range.
    """

    name = "adaptive_patch"

    def __init__(self, target: int = 0, rate: float = 0.003, seed: int = 0, cover_rate: float = 0.003,
                 n_patches: int = 4, train_patches: int = 2, patch_size: int = 4, alpha: float = 1.0,
                 train_alpha: float = 0.5, pattern_seed: int = 8765) -> None:
        super().__init__(target, rate, seed, cover_rate)
        if isinstance(n_patches, bool) or not isinstance(n_patches, int) or not 2 <= n_patches <= 8:
            raise ValueError(f"n_patches must be an integer from 2 to 8, got {n_patches!r}")
        if isinstance(train_patches, bool) or not isinstance(train_patches, int) or not 1 <= train_patches <= n_patches:
            raise ValueError(f"train_patches must be an integer from 1 to n_patches={n_patches}, got {train_patches!r}")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size!r}")
        self.n_patches, self.train_patches, self.patch_size = n_patches, train_patches, patch_size
        self.alpha = check_fraction(alpha, "alpha", low_open=True)
        self.train_alpha = check_fraction(train_alpha, "train_alpha", low_open=True)
        self.pattern_seed = int(pattern_seed)

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        c, h, w = shape
        p, inset = self.patch_size, 1
        if p + 2 * inset > min(h, w) // 2:
            raise ValueError(f"patch_size {p} is too large for images of {h}x{w} (at most {min(h, w) // 2 - 2})")
        lo_r, hi_r, mid_r = inset, h - p - inset, (h - p) // 2
        lo_c, hi_c, mid_c = inset, w - p - inset, (w - p) // 2
        places = [(lo_r, lo_c), (lo_r, hi_c), (hi_r, lo_c), (hi_r, hi_c),
                  (lo_r, mid_c), (hi_r, mid_c), (mid_r, lo_c), (mid_r, hi_c)][: self.n_patches]
        g = torch.Generator().manual_seed(self.pattern_seed)
        masks = torch.zeros(self.n_patches, 1, h, w)
        for i, (r, col) in enumerate(places):
            masks[i, :, r:r + p, col:col + p] = 1.0
        self.masks = masks  # K x 1 x H x W
        # high-contrast noise (values near 0 or 1), so a patch stands out on dark and light images alike
        self.pattern = (torch.rand(shape, generator=g) > 0.5).float()

    def _stamp(self, x: Tensor, m: Tensor, alpha: float) -> Tensor:
        a = alpha * m
        return (1 - a) * x + a * self.pattern

    def _apply(self, x: Tensor) -> Tensor:
        return self._stamp(x, self.masks.amax(0, keepdim=True), self.alpha)

    def _partial(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        order = torch.rand(len(x), self.n_patches, generator=generator, device=x.device).argsort(1)
        pick = torch.zeros(len(x), self.n_patches, device=x.device)
        pick.scatter_(1, order[:, : self.train_patches], 1.0)
        m = (pick[:, :, None, None, None] * self.masks[None]).amax(1)  # N x 1 x H x W
        return self._stamp(x, m, self.train_alpha)
