"""Plain fine-tuning (FT) on the defender's clean data: the simplest elimination baseline.

Fine-tuning a backdoored network on clean data is the baseline of Liu, Dolan-Gavitt & Garg,
"Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks" (RAID 2018, Sec. 4),
and BackdoorBench's "ft" defense (Wu et al., NeurIPS 2022 Datasets & Benchmarks). It minimises
the ordinary cross-entropy ``E_(x,y)~D_clean CE(f_theta(x), y)`` starting from the suspect weights;
catastrophic forgetting of the trigger is the only mechanism.

Defaults and their sources (BackdoorBench ``config/defense/ft/config.yaml`` unless noted):

- ``epochs=100``, ``lr=0.01``, cosine schedule (``CosineAnnealingLR``), SGD momentum 0.9,
  weight decay 5e-4: BackdoorBench.
- ``batch_size=64``: BackdoorBench uses 256 on 2,500 images (~10 steps per epoch); with the quick
  profile's 200 clean images a batch of 256 would give one step per epoch, so the batch is scaled
  down to keep several steps per epoch (~400 steps in all).
- ``crop_padding=4`` random crop and ``hflip=True``: BackdoorBench's training transform for CIFAR-10
  and Tiny ImageNet. On digits (``mnist5k``) the package passes ``hflip=False``: a flipped digit is
  another image (:mod:`beniful.method_defaults`, the per-family defaults).

:func:`cosine_sgd` is the one SGD loop of every fine-tuning defense (FT, FP after pruning, NAD's
teacher and distillation, BeniFul-BE and the ``ft_pool`` control); :func:`finetune` is it with the
cross-entropy on the clean data, so all of them fine-tune the same way.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm  # text bars: tqdm.auto warns "IProgress not found" in kernels without ipywidgets

from ..training import augment
from .base import Eliminator
from .registry import ELIMINATORS

__all__ = ["FineTuning", "cosine_sgd", "finetune", "check_nonneg", "check_int"]


def check_nonneg(value: float, name: str) -> float:
    """A hyperparameter that must be a number >= 0 (``bool`` is refused: ``True`` is no weight).

    Args:
        value: the value given.
        name: the parameter's name, for the error message.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: ``value`` is not a real number >= 0 (NaN included).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def check_int(value: int, name: str, low: int = 0) -> int:
    """A count (epochs, padding, steps) that must be an integer ``>= low``; ``2.0`` or ``True`` is refused.

    Args:
        value: the value given.
        name: the parameter's name, for the error message.
        low: the smallest valid value.

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: ``value`` is not an ``int`` or is below ``low``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def cosine_sgd(model: nn.Module, n: int, batch_loss: Callable[[Tensor], Tensor], *, epochs: int, lr: float,
               batch_size: int, generator: torch.Generator, momentum: float = 0.9, weight_decay: float = 5e-4,
               nesterov: bool = False, progress: bool = False, desc: str = "finetune") -> nn.Module:
    """The one SGD loop every fine-tuning defense runs: shuffled passes over ``n`` items with a per-step
    cosine learning rate, in train mode, in place.

    Why one loop: FT, FP, NAD, BeniFul-BE and the ``ft_pool`` control must differ only in their losses,
    so the equal-budget view (:mod:`beniful.equal_budget`) compares methods and not optimisers. Each
    epoch draws one permutation from ``generator``; ``batch_loss`` receives the batch's indices and
    draws any further randomness (augmentation, pool batches) from the same generator, so a repair is
    deterministic for a seed. Batches of one item are skipped (BatchNorm cannot normalise them in
    train mode).

    Args:
        model: the network, already on its device; only parameters with ``requires_grad`` are trained.
        n: items in one pass (the clean images).
        batch_loss: ``indices -> scalar loss`` for one batch (``indices`` a long tensor into the items).
        epochs: passes over the items; 0 (or ``n < 2``) returns ``model`` untouched.
        lr: the peak learning rate, annealed to 0 over all steps.
        batch_size: items per step.
        generator: the source of the shuffles.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (L2).
        nesterov: use Nesterov momentum.
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        ``model`` itself, trained, in eval mode.
    """
    if epochs == 0 or n < 2:
        return model
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    total = max(1, epochs * math.ceil(n / batch_size))
    step = 0
    model.train()
    for _ in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            if len(idx) < 2:
                continue
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = batch_loss(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    model.eval()
    return model


def finetune(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, lr: float, batch_size: int,
             generator: torch.Generator, device: torch.device, momentum: float = 0.9,
             weight_decay: float = 5e-4, crop_padding: int = 4, hflip: bool = False, nesterov: bool = False,
             extra_loss: Callable[[Tensor], Tensor] | None = None, progress: bool = False,
             desc: str = "finetune") -> nn.Module:
    """SGD with a per-step cosine schedule on ``(x, y)``, in train mode, in place; returns ``model``.

    ``extra_loss(xb)`` (optional) is called right after the forward pass on the (augmented) batch
    ``xb`` and its value is added to the cross-entropy; NAD uses it for its attention loss.
    Batches of one item are skipped (BatchNorm cannot normalise them in train mode).

    Args:
        model: the network, already on ``device``; only parameters with ``requires_grad`` are trained.
        x: clean float images in [0, 1], ``N x C x H x W``, on the generator's device (the CPU).
        y: their labels, long ``[N]``.
        epochs: passes over ``(x, y)``; 0 (or fewer than 2 images) returns ``model`` untouched.
        lr: the peak learning rate, annealed to 0 over all steps.
        batch_size: images per step.
        generator: the source of the shuffles and augmentations.
        device: where each batch is moved.
        momentum: SGD momentum.
        weight_decay: SGD weight decay (L2).
        crop_padding: zero padding of the random crop; 0 for no crop.
        hflip: also flip images left-right at random.
        nesterov: use Nesterov momentum.
        extra_loss: ``batch -> scalar`` added to the cross-entropy, or ``None``.
        progress: show a progress bar.
        desc: the progress bar's label.

    Returns:
        ``model`` itself, fine-tuned, in eval mode.
    """
    def batch_loss(idx: Tensor) -> Tensor:
        xb = augment(x[idx], crop_padding, hflip, generator).to(device)
        loss = F.cross_entropy(model(xb), y[idx].to(device))
        return loss + extra_loss(xb) if extra_loss is not None else loss

    return cosine_sgd(model, len(x), batch_loss, epochs=epochs, lr=lr, batch_size=batch_size, generator=generator,
                      momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, progress=progress, desc=desc)


@ELIMINATORS.register("ft")
class FineTuning(Eliminator):
    """Fine-tune every weight on the clean data with SGD (BackdoorBench "ft")."""

    name = "ft"

    def __init__(self, epochs: int = 100, lr: float = 0.01, batch_size: int = 64, momentum: float = 0.9,
                 weight_decay: float = 5e-4, crop_padding: int = 4, hflip: bool = True, device: str = "auto",
                 seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed, progress=progress)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.weight_decay = check_nonneg(weight_decay, "weight_decay")
        self.crop_padding = check_int(crop_padding, "crop_padding")
        self.hflip = bool(hflip)

    def _finetune_kwargs(self) -> dict[str, Any]:
        return {"epochs": self.epochs, "lr": self.lr, "batch_size": self.batch_size, "generator": self.generator,
                "device": self.device, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "crop_padding": self.crop_padding, "hflip": self.hflip, "progress": self.progress}

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        return finetune(model, x, y, desc="ft", **self._finetune_kwargs())
