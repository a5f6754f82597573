"""TeCo: test-time corruption robustness consistency (Liu et al., CVPR 2023, arXiv:2303.18191).

Idea: a backdoored model loses a clean image at similar severities whatever the corruption, but a
triggered image breaks very unevenly (a patch survives contrast changes and dies under blur; a
blended pattern survives blur and dies under noise). TeCo measures that unevenness.

Implemented statistic (paper Section 4.2, Algorithm 1): for each corruption type k and severity
n = 1..5, corrupt the input and record the lowest severity l_k at which the hard-label prediction
differs from the prediction on the uncorrupted input (l_k = 6 if none does). The score is the
standard deviation of (l_1..l_K) (population std, as the released code's ``np.std``); higher =
more likely triggered (the paper flags TeCo(x) > gamma, Eq. 4). Needs no clean data.

The corruptions (11 of the 15 ImageNet-C types, written in torch) and their severity tables are
in :mod:`beniful.detectors.corruptions`.

Defaults and their sources:

- severities 1..5 and "never flips" = 6: Algorithm 1 and Section 5.1.
- ``preset = "imagenet-c"``: the severity tables of the ``imagecorruptions`` package (ImageNet-C
  values), which TeCo's code applies at the native image size. ``"cifar-10-c"``: the milder tables
  of CIFAR-10-C, made for 32x32 images (offered for small inputs; not the paper's setting).
- deviation = population standard deviation: the released code.

Cost: 1 + 5 * K forward passes per input (56 with the 11 default corruptions; 76 in the paper).

The premise (clean images break at *similar* severities across corruptions) fails on the quick
profile's near-binary MNIST digits, and the score inverts. Measured on the quick BadNets model
(mnist5k, seed 0, cpu, 100 clean and 100 triggered test images, default corruptions): clean digits
flip early under impulse noise and defocus blur (mean first-flip severity 2.2 and 2.3) but almost
never under shot noise, zoom blur or JPEG (5.8-6.0), a mean std of 1.8; the BadNets patch keeps
its target label under every noise, brightness, pixelate and JPEG corruption (6.0) and yields only
to the blurs and the strongest contrast loss (3.7-4.8), a mean std of 0.9. Triggered inputs are *more* consistent than clean ones,
so AUROC is 0.001 (0.003 with ``preset="cifar-10-c"``). The paper's experiments use natural
images (CIFAR-10, GTSRB, Tiny ImageNet), where clean robustness is even across corruptions.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from .base import Detector
from .corruptions import CORRUPTIONS, DEFAULT_CORRUPTIONS, N_SEVERITIES, PRESETS, corrupt
from .registry import DETECTORS

# CORRUPTIONS, PRESETS, DEFAULT_CORRUPTIONS and corrupt are importable from here too (documented in
# beniful.detectors.corruptions)
__all__ = ["TeCo", "first_flip", "deviation"]


def first_flip(changed: Tensor) -> Tensor:
    """[..., S] bool (prediction differs at severity 1..S) -> lowest flipping severity, S+1 if none.

    Args:
        changed: boolean ``[..., S]``; entry ``s - 1`` says whether severity ``s`` changed the prediction.

    Returns:
        Long tensor ``[...]`` with values in 1..S+1.
    """
    s = changed.shape[-1]
    idx = torch.arange(1, s + 1, device=changed.device).expand_as(changed)
    return torch.where(changed, idx, torch.full_like(idx, s + 1)).min(-1).values


def deviation(levels: Tensor) -> Tensor:
    """Population standard deviation over the last dimension (the released code's ``np.std``).

    Args:
        levels: first-flip severities ``[..., K]``, one per corruption type (:func:`first_flip`).

    Returns:
        Float tensor ``[...]``: the TeCo score.
    """
    return levels.float().std(-1, unbiased=False)


@DETECTORS.register("teco")
class TeCo(Detector):
    """Std over corruption types of the severity that first flips the prediction; score = that std."""

    name = "teco"

    def __init__(self, corruptions: Sequence[str] = DEFAULT_CORRUPTIONS, preset: str = "imagenet-c", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(corruptions, str):
            corruptions = (corruptions,)
        corruptions = tuple(corruptions)
        bad = [c for c in corruptions if c not in CORRUPTIONS]
        if bad:
            raise ValueError(f"unknown corruption(s) {bad}; valid: {', '.join(sorted(CORRUPTIONS))}")
        if len(corruptions) < 2 or len(set(corruptions)) != len(corruptions):
            raise ValueError(f"corruptions must name at least 2 distinct types (the score is a std over them), got {corruptions!r}")
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        self.corruptions, self.preset = corruptions, preset
        self.forward_passes = 1.0 + N_SEVERITIES * len(corruptions)
        self.inputs_per_item = N_SEVERITIES  # levels() runs the severities of a corruption in one pass
        self._gen: torch.Generator | None = None

    def score(self, x: Any) -> Tensor:
        """As the base class; the corruption noise is re-seeded per call so scores are reproducible.

        Args:
            x: images in [0, 1] in any form the base class's ``score`` accepts.

        Returns:
            Float tensor ``[N]`` on the CPU: the std of the first-flip severities.
        """
        if self.model is not None:
            self._gen = torch.Generator(device=self.device).manual_seed(self.seed)
        return super().score(x)

    def levels(self, x: Tensor) -> Tensor:
        """[B, K] lowest severity (1..5, 6 = never) at which each corruption flips the prediction.

        Args:
            x: one batch of float images in [0, 1], ``B x C x H x W``, on the detector's device.

        Returns:
            Long tensor ``[B, K]``, the K corruptions in the order of ``corruptions``.
        """
        assert self.model is not None
        if self._gen is None:
            self._gen = torch.Generator(device=x.device).manual_seed(self.seed)
        pred = self.model(x).argmax(1)
        out = []
        for name in self.corruptions:
            xs = torch.cat([corrupt(x, name, s, self._gen, self.preset) for s in range(1, N_SEVERITIES + 1)])
            p = self.model(xs).argmax(1).view(N_SEVERITIES, len(x))
            out.append(first_flip((p != pred[None]).T))
        return torch.stack(out, 1)

    def _score(self, x: Tensor) -> Tensor:
        return deviation(self.levels(x))
