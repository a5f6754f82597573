"""SCALE-UP: scaled prediction consistency (Guo et al., ICLR 2023, arXiv:2302.03251).

Idea: multiplying all pixel values by n > 1 (then clipping to the valid range) washes out the
benign content of an image, so its prediction changes; a trigger the model learned survives the
amplification, so the prediction of a triggered input stays put.

Implemented statistic (paper Definition 1, "scaled prediction consistency")::

    SPC(x) = (1 / |S|) * sum_{n in S} 1[ C(clip(n * x)) == C(x) ]

with C the predicted label. Higher SPC = more likely triggered, so the score is SPC itself.

Data-limited variant (the paper's "data-limited" setting): the defender holds a few benign samples and normalises
SPC with their statistics before thresholding. ``normalize`` selects how:

- ``"none"`` (default): the data-free SPC of Definition 1.
- ``"global"``: (SPC - mu) / sigma over all clean samples, the form of the released code. It is an
  affine map, so it moves the threshold but not the AUROC.
- ``"class"``: mu and sigma per predicted class (benign SPC differs between classes, which is the
  motivation the paper gives); classes with fewer than 2 clean samples fall back to the global
  statistics. Sigma is floored at ``1/|S|`` (the SPC's resolution) so a class whose clean SPCs are all
  equal does not divide by zero.

Defaults and their sources:

- ``scales = (3, 5, 7, 9, 11)``: the amplification set of the paper's experiments and of its
  released code (5 scales).
- clipping to [0, 1]: inputs are un-normalised pixels here, so "clip after amplifying" is the
  paper's operation exactly.
- ``normalize = "none"``: the paper's main (data-free) detector.

Cost: ``1 + |S|`` forward passes per input (6 with the defaults).

Near-binary images (the quick profile's MNIST digits) defeat the premise, not the code. A pixel
that is 0 stays 0 under any amplification and a bright stroke pixel saturates to 1, so
``clip(n * x)`` only thickens anti-aliased edges: the benign content survives and a clean digit
keeps its label as stubbornly as a triggered one. Measured on the quick BadNets model (mnist5k,
seed 0, cpu, 200 test images): 81 % of pixels are exactly 0 and 77 % of the others are >= 1/3
(saturated at n = 3); the mean pixel change at n = 3 is 0.04; SPC = 1 for 94 % of clean and 100 %
of triggered inputs, hence AUROC 0.53 (``normalize="class"``: 0.25, since the triggered inputs'
predicted class, the target, has clean SPC near 1 too). The paper evaluates natural images
(CIFAR-10, Tiny ImageNet) whose mid-range pixels amplification does wash out; scaling after the
model's input normalisation is not the paper's operation (its code denormalises, scales, clips to
[0, 1] and normalises again, which is what ``amplify`` does on un-normalised pixels).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor

from .base import Detector
from .registry import DETECTORS

__all__ = ["ScaleUp", "amplify", "NORMALIZE_MODES"]

NORMALIZE_MODES = ("none", "global", "class")


def amplify(x: Tensor, scales: Sequence[float]) -> Tensor:
    """All amplified copies of a batch: [B,C,H,W] -> [len(scales)*B, C,H,W], scale-major, in [0, 1].

    One tensor for all scales lets the model classify every copy in a single forward pass.

    Args:
        x: float images in [0, 1], ``B x C x H x W`` (un-normalised pixels, so clipping to
            [0, 1] is the paper's "clip to the valid range").
        scales: the amplification factors n (the detector uses values > 1).

    Returns:
        ``len(scales) * B x C x H x W``: rows ``i * B .. (i + 1) * B - 1`` are ``clip(scales[i] * x)``.
    """
    s = torch.as_tensor(list(scales), dtype=x.dtype, device=x.device).view(-1, 1, 1, 1, 1)
    return (s * x[None]).clamp_(0.0, 1.0).flatten(0, 1)


@DETECTORS.register("scale_up")
class ScaleUp(Detector):
    """Scaled prediction consistency; score = SPC (optionally normalised with clean statistics)."""

    name = "scale_up"

    def __init__(self, scales: Sequence[float] = (3, 5, 7, 9, 11), normalize: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        try:
            scales = tuple(float(s) for s in scales)
        except (TypeError, ValueError):
            raise ValueError(f"scales must be a sequence of numbers > 1, got {scales!r}") from None
        if not scales or any(not math.isfinite(s) or s <= 1.0 for s in scales):
            raise ValueError(f"scales must be a non-empty sequence of finite numbers > 1, got {scales!r}")
        if normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE_MODES)}; got {normalize!r}")
        self.scales, self.normalize = scales, normalize
        self.forward_passes = 1.0 + len(scales)
        self.inputs_per_item = len(scales)  # amplify() runs every scale of a batch in one pass
        self.mu: Tensor | None = None   # per class (or a single entry), on the CPU
        self.sigma: Tensor | None = None
        self.global_stats: tuple[float, float] = (0.0, 1.0)

    def spc(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(SPC in [0, 1], original predicted label) for a batch on ``self.device``.

        Args:
            x: one batch of float images in [0, 1], ``N x C x H x W``, already on ``self.device``;
                the detector must be fitted.

        Returns:
            ``(spc, pred)``: float tensor ``[N]`` (share of scales that keep the prediction, in
            steps of ``1/len(scales)``) and the long tensor ``[N]`` of the model's predictions on ``x``.
        """
        assert self.model is not None
        pred = self.model(x).argmax(1)
        scaled = self.model(amplify(x, self.scales)).argmax(1).view(len(self.scales), len(x))
        return (scaled == pred[None]).float().mean(0), pred

    def _fit(self, x: Tensor, y: Tensor) -> None:
        if self.normalize == "none":
            return
        if len(x) < 2:
            raise ValueError(f"normalize={self.normalize!r} needs at least 2 clean images, got {len(x)}")
        spcs, preds = [], []
        with torch.no_grad():
            bs = self.score_batch_size(x)
            for s in range(0, len(x), bs):
                v, p = self.spc(x[s:s + bs].to(self.device))
                spcs.append(v.cpu())
                preds.append(p.cpu())
        spc, pred = torch.cat(spcs), torch.cat(preds)
        floor = 1.0 / len(self.scales)
        g_mu, g_sigma = spc.mean(), spc.std().clamp_min(floor)
        self.global_stats = (float(g_mu), float(g_sigma))
        if self.normalize == "global":
            self.mu, self.sigma = g_mu.view(1), g_sigma.view(1)
            return
        n_cls = int(max(int(pred.max()), int(y.max()) if len(y) else 0)) + 1
        mu, sigma = torch.full((n_cls,), float(g_mu)), torch.full((n_cls,), float(g_sigma))
        for c in range(n_cls):
            v = spc[pred == c]
            if len(v) >= 2:
                mu[c], sigma[c] = v.mean(), v.std().clamp_min(floor)
        self.mu, self.sigma = mu, sigma

    def _score(self, x: Tensor) -> Tensor:
        v, pred = self.spc(x)
        if self.normalize == "none":
            return v
        assert self.mu is not None and self.sigma is not None
        mu, sigma = self.mu.to(v.device), self.sigma.to(v.device)
        if len(mu) == 1:
            return (v - mu[0]) / sigma[0]
        # a class index beyond every clean label and prediction gets the global statistics
        known = pred < len(mu)
        idx = pred.clamp(max=len(mu) - 1)
        m = torch.where(known, mu[idx], torch.full_like(v, self.global_stats[0]))
        s = torch.where(known, sigma[idx], torch.full_like(v, self.global_stats[1]))
        return (v - m) / s
