"""Adversarial Neuron Pruning (ANP): prune the neurons that adversarial neuron perturbation exposes.

Wu & Wang, "Adversarial Neuron Pruning Purifies Backdoored Deep Models", NeurIPS 2021. A backdoored
network is unusually sensitive to small multiplicative perturbations of some neurons: perturbing
them makes the network collapse onto the target class. ANP gives every neuron ``k`` (a BatchNorm
channel, the paper's choice) a mask ``m_k in [0, 1]`` and perturbations ``delta_k, xi_k`` in
``[-eps, eps]`` that scale the BN weight and bias, ``gamma_k (m_k + delta_k)`` and
``beta_k (1 + xi_k)``, and solves (Eq. 5)

    min_m  alpha * L(m, 0, 0) + (1 - alpha) * max_{delta, xi} L(m, delta, xi)

on clean data with alternating steps (Algorithm 1): random start and ``steps`` signed-gradient
ascent steps of size ``eps / steps`` for ``(delta, xi)``, then one SGD step for ``m`` clipped to
``[0, 1]``. Neurons whose mask ends below ``threshold`` are pruned (Sec. 3.3, pruning by
threshold): their BN weight is set to 0 in the returned model, so the change is in its weights.

The masks act through forward hooks that recompute each BN with the masked parameters; any model
with affine BatchNorm layers works. During the optimisation every BN normalises with the *batch's*
statistics, as in the authors' code (which runs the model in train mode); the running statistics
are left untouched and every other layer stays in eval mode. This matters: with frozen running
statistics the perturbations of all layers compound, and on the narrow quick-profile network
(width 8) an ``eps=0.4`` perturbation raised the clean loss from 0.02 to ~30, after which the
mask step zeroed 60% of all neurons; with batch statistics the perturbed loss is ~1 and only a
handful of masks fall.

Defaults and their sources (Wu & Wang Sec. 4 and the authors' ``optimize_mask_cifar.py``;
BackdoorBench ``config/defense/anp/config.yaml`` has the same values):

- ``eps=0.4``, ``steps=1``, ``alpha=0.2``, mask ``lr=0.2`` (SGD, momentum 0.9), ``threshold=0.2``.
- ``batch_size=128``, batches drawn with replacement, as the authors.
- ``iterations=2000`` mask updates (the paper, on 500 clean CIFAR-10 images: 512 passes over
  them). Scaled to another clean-data size with the same passes (:mod:`beniful.paper_settings`):
  800 for the quick profile's 200 images. Each update costs about three forward-backward passes:
  0.28 s on one CPU core for the quick model (~3.8 min at 800). Fewer are not enough: on quick
  BadNets (seed 0, threshold 0.2) ACC/ASR were 0.968/0.924 after 200 updates and 0.946/0.116 after
  400 (evaluation half; on the validation split 200 updates left 0.988/0.991).
- ``crop_padding=4`` random crop and ``hflip=True`` (the authors' clean loader augments CIFAR-10;
  ``False`` on digits, as in FT).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from tqdm import tqdm  # text bars: tqdm.auto warns "IProgress not found" in kernels without ipywidgets

from ..training import augment
from ..utils import check_fraction
from .base import Eliminator
from .ft import check_int, check_nonneg
from .registry import ELIMINATORS

__all__ = ["ANP", "NeuronPerturbation", "bn_layers"]


def bn_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The affine BatchNorm layers of ``model`` (the neurons ANP masks), or a ValueError.

    Args:
        model: the model to repair; BatchNorm 1d, 2d and 3d with ``affine=True`` count.

    Returns:
        ``(qualified name, layer)`` pairs in registration order; never empty.

    Raises:
        ValueError: the model has no affine BatchNorm layer (ANP has no neuron to mask).
    """
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.affine]
    if not layers:
        raise ValueError(f"ANP masks BatchNorm channels, but {type(model).__name__} has no affine BatchNorm "
                         f"layer (nn.BatchNorm1d/2d/3d with affine=True); use another eliminator for this model")
    return layers


class NeuronPerturbation:
    """Forward hook on one BN layer: recompute it with weight ``gamma*(m+delta)`` and bias ``beta*(1+xi)``."""

    def __init__(self, bn: _BatchNorm) -> None:
        c, dev = bn.num_features, bn.weight.device
        self.bn = bn
        self.mask = torch.ones(c, device=dev, requires_grad=True)
        self.delta = torch.zeros(c, device=dev, requires_grad=True)
        self.xi = torch.zeros(c, device=dev, requires_grad=True)
        self.perturb = False
        self.batch_stats = True  # normalise with the batch statistics (the authors' train-mode BN)

    def __call__(self, bn: _BatchNorm, inputs: tuple[Tensor, ...], _out: Tensor) -> Tensor:
        x = inputs[0]
        if self.perturb:
            w, b = bn.weight * (self.mask + self.delta), bn.bias * (1 + self.xi)
        else:
            w, b = bn.weight * self.mask, bn.bias
        use_batch = self.batch_stats or bn.training or bn.running_mean is None
        return F.batch_norm(x, bn.running_mean, bn.running_var, w, b, use_batch, 0.0, bn.eps)


@ELIMINATORS.register("anp")
class ANP(Eliminator):
    """Learn per-BN-channel masks under adversarial neuron perturbation; prune masks below ``threshold``."""

    name = "anp"

    def __init__(self, eps: float = 0.4, steps: int = 1, alpha: float = 0.2, threshold: float = 0.2,
                 iterations: int = 2000, lr: float = 0.2, batch_size: int = 128, crop_padding: int = 4,
                 hflip: bool = True, device: str = "auto", seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=0, lr=lr, batch_size=batch_size, device=device, seed=seed, progress=progress)
        self.eps = check_nonneg(eps, "eps")
        self.steps = check_int(steps, "steps", 1)
        self.alpha = check_fraction(alpha, "alpha", low_open=False)
        self.threshold = check_fraction(threshold, "threshold", low_open=False)
        self.iterations = check_int(iterations, "iterations")
        self.crop_padding = check_int(crop_padding, "crop_padding")
        self.hflip = bool(hflip)
        self.masks: dict[str, Tensor] = {}
        self.pruned: list[tuple[str, int]] = []

    def optimisation_steps(self, n_clean: int, n_pool: int = 0) -> int:
        """Mask updates (each after ``steps`` signed-gradient steps on the neuron perturbations).

        Args:
            n_clean: the defender's clean images (unused: batches are drawn with replacement).
            n_pool: ignored (ANP reads no pool).

        Returns:
            ``iterations``; the network's weights are never trained, only the masks.
        """
        return self.iterations

    def clean_epochs(self, n_clean: int) -> float:
        """Clean images drawn over the whole mask search, in passes over the clean data.

        Args:
            n_clean: the defender's clean images, >= 1.

        Returns:
            ``iterations * batch_size / n_clean`` (batches are drawn with replacement).
        """
        return self.iterations * self.batch_size / max(1, n_clean)

    def optimize_masks(self, model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """Run ANP's min-max on ``model`` (unchanged on return); masks per BN layer name, on the CPU.

        Called by :meth:`~beniful.eliminators.base.Eliminator.repair`, which sets the device and the
        generator this uses.

        Args:
            model: the model, on the eliminator's device; its parameters are frozen during the
                optimisation and their ``requires_grad`` flags restored afterwards.
            x: clean float images in [0, 1], ``N x C x H x W``, on the CPU (batches are drawn with
                replacement).
            y: their labels, long ``[N]``.

        Returns:
            ``{BN layer name: mask}``, each a float tensor ``[channels]`` in [0, 1].

        Raises:
            ValueError: the model has no affine BatchNorm layer.
        """
        layers = bn_layers(model)
        hooks = [NeuronPerturbation(bn) for _, bn in layers]
        handles = [bn.register_forward_hook(h) for (_, bn), h in zip(layers, hooks)]
        frozen = [(p, p.requires_grad) for p in model.parameters()]
        for p, _ in frozen:
            p.requires_grad_(False)
        model.eval()
        masks = [h.mask for h in hooks]
        noise = [t for h in hooks for t in (h.delta, h.xi)]
        mask_opt = torch.optim.SGD(masks, lr=self.lr, momentum=0.9)
        g = self.generator

        def set_perturb(on: bool) -> None:
            for h in hooks:
                h.perturb = on

        try:
            for _ in tqdm(range(self.iterations), desc="anp", disable=not self.progress, leave=False):
                idx = torch.randint(0, len(x), (self.batch_size,), generator=g)
                xb = augment(x[idx], self.crop_padding, self.hflip, g).to(self.device)
                yb = y[idx].to(self.device)
                if self.eps > 0:
                    with torch.no_grad():  # random start in the eps-box
                        for t in noise:
                            t.copy_((torch.rand(t.shape, generator=g) * 2 - 1).mul_(self.eps))
                    set_perturb(True)
                    for _ in range(self.steps):
                        grads = torch.autograd.grad(F.cross_entropy(model(xb), yb), noise)
                        with torch.no_grad():  # ascend the loss, stay in the box
                            for t, gr in zip(noise, grads):
                                t.add_(gr.sign(), alpha=self.eps / self.steps).clamp_(-self.eps, self.eps)
                    loss_rob = F.cross_entropy(model(xb), yb)
                else:
                    loss_rob = xb.new_zeros(())
                set_perturb(False)
                loss_nat = F.cross_entropy(model(xb), yb)
                loss = self.alpha * loss_nat + (1 - self.alpha) * loss_rob
                mask_opt.zero_grad(set_to_none=True)
                loss.backward()
                mask_opt.step()
                with torch.no_grad():
                    for m in masks:
                        m.clamp_(0.0, 1.0)
        finally:
            for h in handles:
                h.remove()
            for p, req in frozen:
                p.requires_grad_(req)
        return {name: h.mask.detach().cpu().clone() for (name, _), h in zip(layers, hooks)}

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        self.masks = self.optimize_masks(model, x, y)
        self.pruned = []
        mods = dict(model.named_modules())
        with torch.no_grad():
            for name, mask in self.masks.items():
                idx = torch.nonzero(mask < self.threshold).flatten()
                mods[name].weight[idx.to(mods[name].weight.device)] = 0.0
                self.pruned += [(name, int(i)) for i in idx]
        return model
