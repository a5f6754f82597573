"""Seeded training and evaluation of (possibly poisoned) classifiers.

Follows airbench's recipe for speed: the whole training set sits on the device as ``uint8``;
poisoning, random-crop and flip run on the device per batch; on CUDA the forward pass uses bf16
autocast and channels_last. Each epoch draws its permutation and augmentation from a generator
seeded with ``(seed, epoch)``, so a run resumed from an epoch checkpoint follows exactly the same
path as an uninterrupted one.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm  # text bars: tqdm.auto warns "IProgress not found" in kernels without ipywidgets

from .attacks.base import Attack
from .utils import batches, predict_logits, resolve_device

__all__ = ["TrainConfig", "augment", "train_classifier", "evaluate", "accuracy", "attack_success_rate", "use_nhwc"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and augmentation settings. Defaults: the paper profile of the book's protocol page (BackdoorBench)."""

    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_padding: int = 4
    hflip: bool = True
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # NHWC where it is safe and faster (see use_nhwc)
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding!r}")

    def key(self) -> dict:
        """The fields that change the trained weights (device-speed switches excluded).

        Returns:
            The config as a dict without ``amp``, ``channels_last`` and ``compile``, i.e. the part of a
            model's cache key that comes from its training recipe.
        """
        d = asdict(self)
        for k in ("amp", "channels_last", "compile"):
            d.pop(k)
        return d


def augment(x: Tensor, padding: int, hflip: bool, generator: torch.Generator | None = None) -> Tensor:
    """Random crop with zero padding and random horizontal flip, per sample, on x's device.

    Args:
        x: float images, ``N x C x H x W``.
        padding: zero padding on each side before the crop back to ``H x W``; 0 for no crop.
        hflip: flip each image left-right with probability 1/2.
        generator: source of the crop offsets and flips (on ``x``'s device).

    Returns:
        The augmented batch, same shape as ``x``.
    """
    n, _, h, w = x.shape
    if padding > 0:
        xp = F.pad(x, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=x.device)
        rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None]
        cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :]
        ar = torch.arange(n, device=x.device)[:, None, None, None]
        ch = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        x = xp[ar, ch, rows, cols]
    if hflip:
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def use_nhwc(device: torch.device, image_shape: tuple[int, ...], threads: int | None = None) -> bool:
    """Whether a training or repair loop runs its model in the channels-last (NHWC) layout.

    On CUDA always (cuDNN's tensor-core kernels). On the CPU only for single-channel images on one
    torch thread, the setting measured safe and faster: oneDNN's NHWC convolutions ran the quick
    profile's 1 x 28 x 28 models 1.3-1.6x faster, but with torch 2.14.1 NHWC crashed (segfault) in
    training a 3 x 64 x 64 smoke model on one thread and in BeniFul-BE's backward on two threads.

    Args:
        device: where the loop runs.
        image_shape: one input's ``(C, H, W)``.
        threads: torch's CPU threads (default: ``torch.get_num_threads()``).

    Returns:
        True when the loop should convert the model (and its batches) to NHWC.
    """
    if device.type == "cuda":
        return True
    threads = torch.get_num_threads() if threads is None else threads
    return device.type == "cpu" and len(image_shape) == 3 and image_shape[0] == 1 and threads == 1


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 100_003 + epoch)
    return g


def make_optimizer(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int):
    """SGD with momentum and weight decay, and a per-step cosine schedule from ``cfg.lr`` to 0.

    Args:
        model: the model whose parameters are optimised.
        cfg: the training recipe (``lr``, ``momentum``, ``weight_decay``, ``epochs``).
        steps_per_epoch: optimiser steps per epoch, so the schedule ends with the last step.

    Returns:
        ``(optimizer, scheduler)``; call ``scheduler.step()`` after every optimiser step.
    """
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    return opt, sched


def train_classifier(
    model: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    cfg: TrainConfig,
    *,
    attack: Attack | None = None,
    poison_idx: Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    start_epoch: int = 0,
    optimizer_state: dict | None = None,
    on_epoch_end: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
) -> nn.Module:
    """Train ``model`` in place on ``(x_train, y_train)``, poisoning ``poison_idx`` with ``attack``.

    ``x_train`` is ``uint8`` (or float in [0, 1]) N x C x H x W. The attack poisons each batch
    (``training_batch``, with its cover samples as ``cover_mask`` when it has any) and runs the forward
    pass (``training_forward``, which may add a loss on middle features). ``on_epoch_end(epoch, model, opt)``
    is called after every epoch (checkpointing); ``start_epoch``/``optimizer_state`` resume a run.

    Args:
        model: the classifier; moved to ``device`` and trained in place.
        x_train: training images, ``uint8`` or float in [0, 1], ``N x C x H x W``.
        y_train: their labels, ``[N]``.
        cfg: the training recipe.
        attack: the poisoning attack, or ``None`` for a clean model.
        poison_idx: indices of the training samples the attack poisons (each batch is poisoned on
            the fly by ``attack.training_batch``).
        seed: seeds the batch order and the augmentation of every epoch.
        device: ``"auto"`` (CUDA when present), a device name or a device.
        progress: show a progress bar.
        start_epoch: first epoch to run (resuming).
        optimizer_state: the optimiser's ``state_dict`` to resume from.
        on_epoch_end: called as ``on_epoch_end(epoch, model, optimizer)`` after every epoch.

    Returns:
        ``model`` itself, trained and in eval mode.
    """
    dev = resolve_device(device)
    model.to(dev)
    cuda = dev.type == "cuda"
    nhwc = cfg.channels_last and use_nhwc(dev, tuple(x_train.shape[1:]))
    if nhwc:
        model.to(memory_format=torch.channels_last)
    fwd = torch.compile(model) if (cfg.compile and cuda) else model
    xs = x_train.to(dev)
    ys = y_train.to(dev).long()
    n = len(ys)
    is_poison = torch.zeros(n, dtype=torch.bool, device=dev)
    if attack is not None and poison_idx is not None and len(poison_idx):
        is_poison[poison_idx.to(dev)] = True
    # cover samples (adaptive attacks): triggered, true label kept; never one of the poisoned
    cover_idx = attack.cover_indices(y_train.cpu()) if attack is not None else torch.zeros(0, dtype=torch.long)
    is_cover = None
    if len(cover_idx):
        is_cover = torch.zeros(n, dtype=torch.bool, device=dev)
        is_cover[cover_idx.to(dev)] = True
        is_cover &= ~is_poison
    steps = math.ceil(n / cfg.batch_size)
    opt, sched = make_optimizer(model, cfg, steps)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
        with warnings.catch_warnings():  # fast-forwarding the schedule before any optimizer.step() is intended
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(start_epoch * steps):
                sched.step()
    if attack is not None and start_epoch == 0:
        attack.begin_training(xs, ys, dev, progress)  # as stored: a uint8 set stays uint8 (no float copy)
    extra_params = attack.parameters() if attack is not None else []

    bar = tqdm(range(start_epoch, cfg.epochs), desc="train", disable=not progress, leave=False)
    for epoch in bar:
        g = _epoch_generator(seed, epoch, dev)
        perm = torch.randperm(n, generator=g, device=dev)
        model.train()
        if attack is not None:
            attack.train_mode(True)
        # the epoch's loss is summed on the device and read once per epoch: a per-step ``float(loss)``
        # would make the host wait for every step and leave a GPU idle between kernel launches
        tot_loss, tot_n = torch.zeros((), device=dev), 0
        for s in batches(n, cfg.batch_size):
            idx = perm[s]
            xb = xs[idx]
            xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb.float()
            yb = ys[idx]
            extra = None
            feature_loss = None
            if attack is not None:
                if is_cover is None:
                    xb, yb, extra = attack.training_batch(xb, yb, is_poison[idx], g)
                else:
                    xb, yb, extra = attack.training_batch(xb, yb, is_poison[idx], g, cover_mask=is_cover[idx])
            xb = augment(xb, cfg.crop_padding, cfg.hflip, g)
            if nhwc:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda and cfg.amp):
                if attack is not None:
                    logits, feature_loss = attack.training_forward(model, fwd, xb)
                else:
                    logits = fwd(xb)
                loss = F.cross_entropy(logits, yb)
            if extra is not None:
                loss = loss + extra
            if feature_loss is not None:
                loss = loss + feature_loss.float()
            opt.zero_grad(set_to_none=True)
            for p in extra_params:
                p.grad = None
            loss.backward()
            opt.step()
            sched.step()
            if extra_params:
                attack.step()  # type: ignore[union-attr]
            tot_loss += loss.detach().float() * len(yb)
            tot_n += len(yb)
        if attack is not None:
            attack.end_epoch(epoch)
            attack.train_mode(False)
        if progress:
            bar.set_postfix(loss=f"{float(tot_loss) / max(tot_n, 1):.3f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch, model, opt)
    model.eval()
    if nhwc:
        model.to(memory_format=torch.contiguous_format)
    return model


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy in [0, 1].

    Args:
        model: the classifier.
        x: images, ``N x C x H x W``.
        y: their labels.
        batch_size: images per forward pass.

    Returns:
        The share of correct predictions; NaN for an empty set.
    """
    if len(y) == 0:
        return float("nan")
    pred = predict_logits(model, x, batch_size).argmax(1)
    return float((pred == y.cpu()).float().mean())


def attack_success_rate(model: nn.Module, attack: Attack, x: Tensor, y: Tensor, batch_size: int = 512) -> float:
    """Share of triggered non-target test images classified as the target.

    Args:
        model: the classifier.
        attack: the attack whose trigger is applied (moved to the model's device).
        x: clean test images.
        y: their labels; images of the target class are left out.
        batch_size: images per forward pass.

    Returns:
        ASR in [0, 1]; NaN when every image is of the target class.
    """
    dev = next(model.parameters()).device
    attack.to(dev)
    keep = y != attack.target
    if not bool(keep.any()):
        return float("nan")
    xt = torch.cat([attack.apply(x[keep][s].to(dev)).cpu() for s in batches(int(keep.sum()), batch_size)])
    pred = predict_logits(model, xt, batch_size).argmax(1)
    return float((pred == attack.target).float().mean())


def evaluate(model: nn.Module, x: Tensor, y: Tensor, attack: Attack | None = None) -> dict[str, float]:
    """``{"acc": ..., "asr": ...}`` on a test set (``asr`` is NaN without an attack).

    Args:
        model: the classifier.
        x: clean test images.
        y: their labels.
        attack: the backdoor's attack, or ``None``.

    Returns:
        ``{"acc": accuracy, "asr": attack success rate}``.
    """
    out = {"acc": accuracy(model, x, y)}
    out["asr"] = attack_success_rate(model, attack, x, y) if attack is not None else float("nan")
    return out
