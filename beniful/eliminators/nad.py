"""Neural Attention Distillation (NAD): erase the backdoor by matching a fine-tuned teacher's attention.

Li, Lyu, Koren, Lyu, Li & Ma, "Neural Attention Distillation: Erasing Backdoor Triggers from Deep
Neural Networks", ICLR 2021. Two steps (Sec. 3, Fig. 1):

1. *Teacher*: fine-tune a copy of the backdoored network on the clean data for a few epochs.
2. *Student*: fine-tune the backdoored network itself with
   ``L = CE(f_S(x), y) + sum_l beta_l * L_NAD(F_T^l(x), F_S^l(x))`` (Eq. 2), where ``F^l`` is the
   output of layer ``l`` and ``L_NAD`` compares normalised attention maps (Eq. 1):
   ``A(F) = sum_c |F_c|^p`` over channels (the attention operator of Zagoruyko & Komodakis, 2017,
   with ``p = 2``), ``L_NAD = || A(F_T)/||A(F_T)||_2 - A(F_S)/||A(F_S)||_2 ||``. As in the
   authors' implementation the distance is the *mean squared* difference of the normalised maps,
   which is the scale the published ``beta`` values belong to.

Defaults and their sources:

- ``layers=("layer2", "layer3", "layer4")``, ``betas=(500, 1000, 1000)``, ``p=2``: BackdoorBench
  ``config/defense/nad/config.yaml`` for PreAct-ResNet-18 (the paper distils WRN-16-1's groups; its
  CIFAR-10 setting puts ``beta=5000`` on the last group).
- ``teacher_epochs=10``: the paper fine-tunes the teacher for 5-10 epochs; BackdoorBench ``te_epochs``.
- ``epochs=20``: the paper's distillation epochs. ``lr=0.01``, cosine, SGD momentum 0.9, weight
  decay 1e-4: BackdoorBench (the paper's code starts at 0.1, too large for 200 images).
- ``batch_size=64``: the authors' code (BackdoorBench uses 256 on 2,500 images).
- ``crop_padding=4``, ``hflip=True`` (``False`` on digits): as :class:`~beniful.eliminators.ft.FineTuning`.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import check_layer
from .base import steps_per_epoch
from .ft import FineTuning, check_int, finetune
from .registry import ELIMINATORS

__all__ = ["NAD", "attention_map", "attention_loss"]


def attention_map(feature: Tensor, p: float = 2.0, eps: float = 1e-6) -> Tensor:
    """NAD's attention ``A(F) = sum_c |F_c|^p``, flattened per sample and L2-normalised: ``N x (H*W)``.

    Args:
        feature: a layer's output, ``N x C x H x W`` (channels in dim 1).
        p: the exponent on the channel magnitudes (NAD uses 2).
        eps: added to the norm, so an all-zero map stays finite.

    Returns:
        The normalised maps, ``N x (H*W)``; the graph to ``feature`` is kept.

    Raises:
        ValueError: ``feature`` has fewer than 2 dimensions.
    """
    if feature.ndim < 2:
        raise ValueError(f"attention needs features N x C x ..., got shape {tuple(feature.shape)}")
    am = feature.abs().pow(p).sum(1).flatten(1)
    return am / (am.norm(dim=1, keepdim=True) + eps)


def attention_loss(student: Tensor, teacher: Tensor, p: float = 2.0) -> Tensor:
    """Mean squared distance between the normalised attention maps (NAD Eq. 1, authors' scale).

    Args:
        student: the repaired model's feature at one layer, ``N x C x H x W``.
        teacher: the fine-tuned teacher's feature at the same layer, same shape.
        p: the attention exponent (see :func:`attention_map`).

    Returns:
        A scalar tensor (the mean over samples and positions), differentiable w.r.t. ``student``.

    Raises:
        ValueError: the two shapes differ.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student and teacher features differ in shape: "
                         f"{tuple(student.shape)} vs {tuple(teacher.shape)}")
    return F.mse_loss(attention_map(student, p), attention_map(teacher, p))


class _Capture:
    """Forward hook storing the latest output of a module (keeps the autograd graph)."""

    def __init__(self) -> None:
        self.out: Tensor | None = None

    def __call__(self, _m: nn.Module, _i: Any, out: Any) -> None:
        if not isinstance(out, Tensor):
            raise ValueError("NAD layers must output one tensor")
        self.out = out


@ELIMINATORS.register("nad")
class NAD(FineTuning):
    """Fine-tune a teacher, then distil its attention maps at ``layers`` into the backdoored student."""

    name = "nad"

    def __init__(self, layers: Sequence[str] = ("layer2", "layer3", "layer4"),
                 betas: Sequence[float] = (500.0, 1000.0, 1000.0), p: float = 2.0, teacher_epochs: int = 10,
                 epochs: int = 20, lr: float = 0.01, batch_size: int = 64, momentum: float = 0.9,
                 weight_decay: float = 1e-4, crop_padding: int = 4, hflip: bool = True, device: str = "auto",
                 seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                         crop_padding=crop_padding, hflip=hflip, device=device, seed=seed, progress=progress)
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        betas = (betas,) if isinstance(betas, (int, float)) else tuple(betas)
        if not layers or not all(isinstance(n, str) and n for n in layers):
            raise ValueError(f"layers must be a non-empty list of submodule names, got {layers!r}")
        if len(betas) != len(layers):
            raise ValueError(f"need one beta per layer: {len(layers)} layers {layers} but {len(betas)} betas {betas}")
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) and b >= 0 for b in betas):
            raise ValueError(f"betas must be non-negative numbers, got {betas!r}")
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0:
            raise ValueError(f"p must be a positive number, got {p!r}")
        self.layers, self.betas, self.p = layers, tuple(float(b) for b in betas), float(p)
        self.teacher_epochs = check_int(teacher_epochs, "teacher_epochs")

    def optimisation_steps(self, n_clean: int, n_pool: int = 0) -> int:
        """SGD steps of the teacher's fine-tuning plus the student's distillation (both on the clean data).

        Args:
            n_clean: the defender's clean images.
            n_pool: ignored (NAD reads no pool).

        Returns:
            ``(teacher_epochs + epochs)`` times the steps of one pass.
        """
        return (self.teacher_epochs + self.epochs) * steps_per_epoch(n_clean, self.batch_size)

    def clean_epochs(self, n_clean: int) -> float:
        """Passes over the clean data: the teacher's and the student's.

        Args:
            n_clean: the defender's clean images (unused: both loops make whole passes).

        Returns:
            ``teacher_epochs + epochs``.
        """
        return float(self.teacher_epochs + self.epochs)

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        for name in self.layers:
            check_layer(model, name)
        kw = self._finetune_kwargs()
        teacher = copy.deepcopy(model)
        finetune(teacher, x, y, **{**kw, "epochs": self.teacher_epochs}, desc="nad teacher")
        teacher.eval()
        for prm in teacher.parameters():
            prm.requires_grad_(False)
        s_caps = [_Capture() for _ in self.layers]
        t_caps = [_Capture() for _ in self.layers]
        handles = [check_layer(model, n).register_forward_hook(c) for n, c in zip(self.layers, s_caps)]
        handles += [check_layer(teacher, n).register_forward_hook(c) for n, c in zip(self.layers, t_caps)]

        def distill(xb: Tensor) -> Tensor:
            with torch.no_grad():
                teacher(xb)
            loss = xb.new_zeros(())
            for beta, sc, tc in zip(self.betas, s_caps, t_caps):
                if beta > 0:
                    loss = loss + beta * attention_loss(sc.out, tc.out.detach(), self.p)  # type: ignore[arg-type]
            return loss

        try:
            finetune(model, x, y, extra_loss=distill, desc="nad student", **kw)
        finally:
            for h in handles:
                h.remove()
        return model
