"""Fine-tuning with self-distillation on the incoming pool (``ft_pool``): the control for BeniFul-BE's extra data.

BeniFul-BE (:class:`~beniful.eliminators.beniful.BeniFulEliminator`) reads more than the defender's
labelled clean data: it also reads the unlabelled incoming pool, and its ``keep`` term
self-distils on the pool inputs its detector calls benign, labelled by the original model. Plain
fine-tuning (``ft``) sees none of that, so a table in which BeniFul-BE beats FT cannot say whether the
win comes from BeniFul's detector-driven terms or simply from the extra (pseudo-labelled) data. This
eliminator gives fine-tuning the same pool:

    L = CE(f_theta(x), y) + keep * CE(f_theta(x_p), argmax f_0(x_p))

on the clean data ``(x, y)`` and on pool inputs ``x_p``, where ``f_0`` is the model as given
(frozen). It has no detector, so *every* pool input is used, triggered ones included: a triggered
input's pseudo-label is the backdoor's target, which is what a defender without a detector would
teach. Everything else is BeniFul-BE's: the optimiser (SGD, momentum, weight decay, the per-step
cosine schedule), the epochs over the clean data, the batch size, the augmentation (random crop,
optional flip), the ``keep`` weight and the way pool batches are drawn (``batch_size`` pool inputs
per step, with replacement, in the same forward pass as the clean batch). The defaults are read from
BeniFul-BE's signature, one source of truth, so the only difference between the two is BeniFul's
detector-driven terms (the feature distances, ``relabel``, the transplant cross-entropy, and the
detector's choice of which pool inputs to keep).
"""
from __future__ import annotations

import inspect
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training import augment
from ..utils import batches
from .base import Eliminator
from .beniful import BeniFulEliminator
from .ft import check_int, check_nonneg, cosine_sgd
from .registry import ELIMINATORS

__all__ = ["FineTuningPool", "SHARED_WITH_BENIFUL"]

#: the parameters ``ft_pool`` shares with BeniFul-BE; their defaults are BeniFul-BE's
SHARED_WITH_BENIFUL: tuple[str, ...] = ("epochs", "lr", "batch_size", "momentum", "weight_decay", "keep",
                                        "crop_padding", "hflip")
_BE = {k: p.default for k, p in inspect.signature(BeniFulEliminator.__init__).parameters.items()
       if k in SHARED_WITH_BENIFUL}


@ELIMINATORS.register("ft_pool")
class FineTuningPool(Eliminator):
    """Fine-tune on the clean data plus ``keep`` x self-distillation on every pool input (original model's labels)."""

    name = "ft_pool"
    uses_pool = True

    def __init__(self, epochs: int = _BE["epochs"], lr: float = _BE["lr"], batch_size: int = _BE["batch_size"],
                 momentum: float = _BE["momentum"], weight_decay: float = _BE["weight_decay"],
                 keep: float = _BE["keep"], crop_padding: int = _BE["crop_padding"], hflip: bool = _BE["hflip"],
                 device: str = "auto", seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed, progress=progress)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.weight_decay = check_nonneg(weight_decay, "weight_decay")
        self.keep = check_nonneg(keep, "keep")
        self.crop_padding = check_int(crop_padding, "crop_padding")
        self.hflip = bool(hflip)
        #: how many pool inputs the last repair distilled on (0 without a pool or with ``keep=0``)
        self.n_pool_used = 0

    @torch.no_grad()
    def pseudo_labels(self, original: nn.Module, pool: Tensor) -> Tensor:
        """The original model's class for every pool input (unaugmented, eval mode), as BeniFul's ``keep`` labels.

        Args:
            original: the model as given, frozen, on the eliminator's device.
            pool: the unlabelled inputs, on the CPU.

        Returns:
            Long ``[len(pool)]`` on the CPU.
        """
        original.eval()
        return torch.cat([original(pool[s].to(self.device)).argmax(1).cpu() for s in batches(len(pool), 256)])

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        self.n_pool_used = 0
        use_k = self.keep > 0 and pool is not None and len(pool) > 0
        if self.keep > 0 and not use_k:
            warnings.warn("ft_pool: no pool of incoming inputs, so no self-distillation; this is plain fine-tuning "
                          "with BeniFul-BE's optimiser", stacklevel=3)
        if use_k:
            assert pool is not None
            y_p = self.pseudo_labels(model, pool)  # the weights are still the original ones here
            self.n_pool_used = len(pool)
        g = self.generator

        def batch_loss(idx: Tensor) -> Tensor:
            xb = augment(x[idx], self.crop_padding, self.hflip, g).to(self.device)
            yb = y[idx].to(self.device)
            parts = [xb]
            if use_k:
                kidx = torch.randint(len(pool), (self.batch_size,), generator=g)
                parts.append(augment(pool[kidx], self.crop_padding, self.hflip, g).to(self.device))
                yk = y_p[kidx].to(self.device)
            logits = model(torch.cat(parts))  # one pass, as BeniFul-BE: BatchNorm sees both parts
            loss = F.cross_entropy(logits[:len(xb)], yb)
            if use_k:
                loss = loss + self.keep * F.cross_entropy(logits[len(xb):], yk)
            return loss

        return cosine_sgd(model, len(x), batch_loss, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                          generator=g, momentum=self.momentum, weight_decay=self.weight_decay,
                          progress=self.progress, desc="ft_pool")
