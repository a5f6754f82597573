"""Fine-Pruning (FP): prune channels that stay dormant on clean data, then fine-tune.

Liu, Dolan-Gavitt & Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural
Networks", RAID 2018, Sec. 4 ("pruning defense" + "fine-pruning"). Backdoor behaviour tends to live
in units of the last convolutional stage that clean inputs barely activate. The defender

1. records every channel's mean activation of the layer's output on clean data,
2. prunes channels in *increasing* order of that mean, one at a time, and stops once the clean
   accuracy on held-out clean data has dropped by more than ``tolerance`` (the last network within
   the tolerance is kept),
3. fine-tunes the pruned network on the clean data (Sec. 4.3), pruned channels staying at zero.

Pruning works on any model: channels of the output of submodule ``layer`` are multiplied by a 0/1
mask in a forward hook (:class:`ChannelMask`) that stays on the returned model; no architecture
is edited. (For our PreAct-ResNet-18 ``"layer4"`` is the last stage, as BackdoorBench hooks it;
its output is pre-activation, and a pruned channel becomes a constant after the final BN.)

Defaults and their sources:

- ``layer="layer4"``: the last convolutional stage (Liu et al. prune the last conv layer;
  BackdoorBench hooks ``layer4`` of PreAct-ResNet-18).
- ``tolerance=0.1``: BackdoorBench ``acc_ratio`` (the paper leaves the stopping accuracy drop to
  the defender), read here as an absolute drop in held-out clean accuracy.
- ``val_fraction=0.2``: share of the clean data held out to measure that accuracy (the paper uses
  a separate validation set; we carve it from the defender's clean data). Fine-tuning then uses
  all clean data.
- fine-tuning: same defaults as :class:`~beniful.eliminators.ft.FineTuning` (BackdoorBench
  ``fp`` config: 100 epochs, lr 0.01, cosine, SGD momentum 0.9, weight decay 5e-4).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..utils import batches, check_fraction, check_layer
from .ft import FineTuning, finetune
from .registry import ELIMINATORS

__all__ = ["FinePruning", "ChannelMask", "mean_channel_activation"]


class ChannelMask:
    """Forward hook multiplying dim 1 (channels) of a module's output by a fixed 0/1 mask.

    A plain picklable object (not a closure), so a model carrying it can be deep-copied.
    """

    def __init__(self, mask: Tensor) -> None:
        self.mask = mask.detach().float().cpu()

    def __call__(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.ndim < 2 or output.shape[1] != len(self.mask):
            raise ValueError(f"ChannelMask expects an output with {len(self.mask)} channels in dim 1")
        shape = (1, -1) + (1,) * (output.ndim - 2)
        return output * self.mask.to(device=output.device, dtype=output.dtype).view(shape)


@torch.no_grad()
def mean_channel_activation(model: nn.Module, module: nn.Module, x: Tensor, batch_size: int,
                            device: torch.device) -> Tensor:
    """Mean over samples and positions of each channel of ``module``'s output (eval mode).

    Fine-Pruning prunes the channels that clean inputs leave dormant, so this is its ranking.

    Args:
        model: the network to run (put in eval mode).
        module: the submodule of ``model`` whose output is read; it must output one tensor with
            channels in dim 1 (``N x C x ...``).
        x: clean float images in [0, 1], ``N x C x H x W`` (N >= 1; any device).
        batch_size: images per forward pass.
        device: where the model runs.

    Returns:
        Float tensor ``[channels]`` on the CPU.

    Raises:
        ValueError: the module's output is not a tensor with a channel dimension.
    """
    total: Tensor | None = None
    store: list[Tensor] = []

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        store.append(out)

    handle = module.register_forward_hook(hook)
    model.eval()
    try:
        for s in batches(len(x), batch_size):
            store.clear()
            model(x[s].to(device))
            if not store or not isinstance(store[0], Tensor) or store[0].ndim < 2:
                raise ValueError("the pruned layer must output one tensor with channels in dim 1")
            out = store[0].float()
            part = out.transpose(0, 1).reshape(out.shape[1], -1).sum(1).cpu()
            total = part if total is None else total + part
    finally:
        handle.remove()
    assert total is not None
    positions = store[0][0, 0].numel() if store else 1
    return total / (len(x) * positions)


@torch.no_grad()
def _accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device: torch.device) -> float:
    model.eval()
    correct = sum(int((model(x[s].to(device)).argmax(1).cpu() == y[s]).sum()) for s in batches(len(x), batch_size))
    return correct / max(1, len(x))


@ELIMINATORS.register("fp")
class FinePruning(FineTuning):
    """Prune the named layer's least-active channels within a clean-accuracy tolerance, then fine-tune."""

    name = "fp"

    def __init__(self, layer: str = "layer4", tolerance: float = 0.1, val_fraction: float = 0.2,
                 epochs: int = 100, lr: float = 0.01, batch_size: int = 64, momentum: float = 0.9,
                 weight_decay: float = 5e-4, crop_padding: int = 4, hflip: bool = True, device: str = "auto",
                 seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                         crop_padding=crop_padding, hflip=hflip, device=device, seed=seed, progress=progress)
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer must be a submodule name such as 'layer4', got {layer!r}")
        self.layer = layer
        self.tolerance = check_fraction(tolerance, "tolerance", low_open=False)
        self.val_fraction = check_fraction(val_fraction, "val_fraction", high_open=True)
        self.activation: Tensor | None = None
        self.pruned_channels: list[int] = []
        self.prune_curve: list[float] = []

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        module = check_layer(model, self.layer)
        n_val = max(1, int(round(self.val_fraction * len(x))))
        if n_val >= len(x):
            raise ValueError(f"FP needs at least 2 clean images (one held out for accuracy), got {len(x)}")
        val = torch.randperm(len(x), generator=self.generator)[:n_val]
        x_val, y_val = x[val], y[val]
        act = mean_channel_activation(model, module, x, 256, self.device)
        self.activation = act
        order = torch.argsort(act)  # least active first
        mask = torch.ones(len(act))
        hook = ChannelMask(mask)
        handle = module.register_forward_hook(hook)
        base = _accuracy(model, x_val, y_val, 256, self.device)
        curve = [base]
        n_pruned = 0
        for k in range(1, len(act)):  # never prune every channel
            hook.mask[order[k - 1]] = 0.0
            acc = _accuracy(model, x_val, y_val, 256, self.device)
            curve.append(acc)
            if base - acc > self.tolerance:
                break
            n_pruned = k
        hook.mask.fill_(1.0)
        hook.mask[order[:n_pruned]] = 0.0
        self.pruned_channels = sorted(int(c) for c in order[:n_pruned])
        self.prune_curve = curve
        try:
            finetune(model, x, y, desc="fp", **self._finetune_kwargs())
        except BaseException:
            handle.remove()
            raise
        return model
