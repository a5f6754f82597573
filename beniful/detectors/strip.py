"""STRIP: STRong Intentional Perturbation (Gao et al., ACSAC 2019, arXiv:1902.06531).

Idea: superimposing a clean image on a benign input makes the prediction wander between classes
(high entropy), while a trigger keeps steering every blend to the target class (low entropy).

Implemented statistic (paper Section IV-D, Eq. 2-4): for an input ``x`` and ``N`` clean overlay
images ``o_n``, each perturbed input is the superimposition ``p_n = clip(alpha * x + beta * o_n)``;
its Shannon entropy ``H_n = -sum_i y_i log2 y_i`` is taken over the softmax output ``y``, and the
normalised entropy is ``H = (1/N) sum_n H_n``. STRIP flags low ``H``; our continuous score is
``-H`` so that, as for every detector here, higher means "more likely triggered".

Defaults and their sources:

- ``n_overlays = 100``: N in the paper's experiments and the default of public
  re-implementations (STRIP costs 20-100 passes per input, depending on N).
- ``alpha = beta = 1.0``: the superimposition of the authors' release is OpenCV's
  ``addWeighted(background, 1, overlay, 1, 0)``, i.e. a plain sum, saturated to the valid range;
  we clip to [0, 1] as the PyTorch ports do.
- Overlays are drawn once, without replacement, from the clean data given to ``fit`` (the paper
  draws them from held-out clean samples); a fixed set makes scores deterministic and lets every
  input of a batch share one vectorised pass.

Cost: ``n_overlays`` forward passes per input.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import memory
from ..utils import check_positive_int
from .base import Detector
from .registry import DETECTORS

__all__ = ["STRIP", "blend", "normalised_entropy"]

#: most images per forward pass inside one scored batch (batch x overlays can be large); fewer when
#: that many would not fit the detector's memory budget (:mod:`beniful.memory`)
MAX_FORWARD = 4096


def blend(x: Tensor, overlays: Tensor, alpha: float = 1.0, beta: float = 1.0) -> Tensor:
    """Superimpose every overlay on every input: [B,C,H,W] x [N,C,H,W] -> [B,N,C,H,W] in [0, 1].

    Args:
        x: the inputs, float images in [0, 1], ``B x C x H x W``.
        overlays: the clean overlay images, ``N x C x H x W``, same device and image shape.
        alpha: weight of the input in the sum.
        beta: weight of the overlay in the sum.

    Returns:
        ``clip(alpha * x[b] + beta * overlays[n], 0, 1)`` at index ``[b, n]``.
    """
    return (alpha * x[:, None] + beta * overlays[None]).clamp_(0.0, 1.0)


def normalised_entropy(logits: Tensor) -> Tensor:
    """Shannon entropy (bits) of softmax(logits) along the last dimension (paper Eq. 2).

    Computed in float64 from log-probabilities so that very confident predictions keep distinct,
    tiny entropies instead of all rounding to 0 and tying.

    Args:
        logits: class logits, any shape ``[..., K]`` with the K classes last.

    Returns:
        Float64 entropies in bits, shape ``[...]``, in [0, log2 K].
    """
    logp = F.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(-1) / math.log(2.0)


@DETECTORS.register("strip")
class STRIP(Detector):
    """Entropy of predictions on clean-image superimpositions; score = -mean entropy."""

    name = "strip"

    def __init__(self, n_overlays: int = 100, alpha: float = 1.0, beta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_positive_int(n_overlays, "n_overlays")
        for nm, v in (("alpha", alpha), ("beta", beta)):
            if not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"{nm} must be a positive finite number, got {v!r}")
        self.n_overlays, self.alpha, self.beta = n_overlays, float(alpha), float(beta)
        self.forward_passes = float(n_overlays)
        self.overlays: Tensor | None = None

    def _fit(self, x: Tensor, y: Tensor) -> None:
        if len(x) == 0:
            raise ValueError("STRIP needs clean images to superimpose; got an empty clean set")
        g = torch.Generator().manual_seed(self.seed)
        if len(x) >= self.n_overlays:
            idx = torch.randperm(len(x), generator=g)[: self.n_overlays]
        else:  # fewer clean images than overlays: reuse some rather than fail
            idx = torch.randint(len(x), (self.n_overlays,), generator=g)
        self.overlays = x[idx].to(self.device)

    def entropy(self, x: Tensor) -> Tensor:
        """Mean entropy H over the overlays for each input of a batch (on ``self.device``).

        Args:
            x: one batch of float images in [0, 1], ``N x C x H x W``, on ``self.device``, of the
                clean data's image shape; the detector must be fitted.

        Returns:
            Float64 tensor ``[N]`` of mean entropies in bits (low = likely triggered).

        Raises:
            ValueError: the image shape differs from the clean data's.
        """
        assert self.model is not None and self.overlays is not None
        if x.shape[1:] != self.overlays.shape[1:]:
            raise ValueError(f"inputs have shape {tuple(x.shape[1:])} but the clean data had "
                             f"{tuple(self.overlays.shape[1:])}")
        total = torch.zeros(len(x), device=x.device, dtype=torch.float64)
        # group overlays so that one forward pass holds at most MAX_FORWARD images, and no more than
        # the budget allows (score() already keeps len(x) within it)
        per_pass = memory.items_that_fit(self.forward_bytes(x), self.budget(), MAX_FORWARD)
        step = max(1, per_pass // max(1, len(x)))
        for s in range(0, self.n_overlays, step):
            ov = self.overlays[s:s + step]
            p = blend(x, ov, self.alpha, self.beta)
            logits = self.model(p.flatten(0, 1))
            total += normalised_entropy(logits).view(len(x), len(ov)).sum(1)
        return total / self.n_overlays

    def _score(self, x: Tensor) -> Tensor:
        return -self.entropy(x)
