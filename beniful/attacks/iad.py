"""Input-Aware Dynamic backdoor (IAD; Nguyen & Tran, NeurIPS 2020, "Input-Aware Dynamic Backdoor Attack").

The trigger is not fixed: a *mask generator* ``M`` and a *pattern generator* ``G`` turn every
input into its own trigger, and the backdoored image is (paper, Eq. 1)

    B(x) = (1 - M(x)) * x + M(x) * G(x).

Training follows the paper's two phases:

1. ``begin_training``: ``M`` alone is pre-trained with the mask diversity loss
   ``||x - x'|| / ||M(x) - M(x')||`` plus ``lambda_norm * max(0, mean(M(x)) - mask_density)``
   (the norm loss keeps masks sparse), then frozen.
2. ``training_batch`` / ``step``: ``G`` is trained jointly with the classifier. Per batch, the
   saved poisoned indices (share ``rate``) get their own trigger and the target label (backdoor
   mode); a further ``cross_rate`` share gets the trigger of *another* image of the batch and keeps
   its true label (cross-trigger mode, which makes triggers non-reusable); the pattern diversity
   loss ``lambda_div * ||x - x'|| / ||G(x) - G(x')||`` (Eq. 3) is returned as the extra loss.
   The classifier's loss gradient reaches ``G`` through the poisoned images; the trainer calls
   :meth:`IAD.step` after each classifier step to apply ``G``'s own Adam update.

The two generators are small conv encoder-decoders of our own design (no third-party code).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import batches, check_fraction
from .base import Attack
from .registry import ATTACKS

_EPS = 1e-6


class TriggerNet(nn.Module):
    """Conv encoder-decoder ``C x H x W -> out_channels x H x W`` (pre-activation logits).

    Two stride-2 convolutions give each output pixel a receptive field covering most of a 28- or
    32-pixel image, which is what makes the trigger depend on the whole input. The decoder stops
    at half resolution and the logits are upsampled bilinearly: triggers are smooth blobs anyway,
    and a full-resolution decoder cost more than half of a narrow PreAct-ResNet's step on a CPU.
    No normalisation layers, so train and eval mode compute the same function.

    Args:
        in_channels: channels of the input image.
        out_channels: channels of the output (1 for a mask, ``C`` for a pattern).
        width: channels of the hidden layers.
    """

    def __init__(self, in_channels: int, out_channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.enc = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, 1, 1), nn.ReLU(),
        )
        self.dec = nn.Sequential(nn.Conv2d(2 * w, w, 3, 1, 1), nn.ReLU())
        self.out = nn.Conv2d(w + in_channels, out_channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Trigger logits at the input's resolution (the caller applies the sigmoid).

        Args:
            x: float images in [0, 1], ``N x C x H x W`` (any H, W; odd sizes are fine).

        Returns:
            Logits, ``N x out_channels x H x W``.
        """
        h, w = x.shape[-2:]
        half = ((h + 1) // 2, (w + 1) // 2)
        z = self.dec(F.interpolate(self.enc(x), size=half, mode="nearest"))
        z = self.out(torch.cat([z, F.adaptive_avg_pool2d(x, half)], dim=1))  # input skip: local detail
        return F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)


def _pair_distance(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample root-mean-square distance, shape [N]."""
    return (a - b).pow(2).flatten(1).mean(1).add(_EPS).sqrt()


def _derangement(n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A random permutation without fixed points (n >= 2): every item gets a *different* partner."""
    order = torch.randperm(n, generator=generator, device=device)
    partner = torch.empty_like(order)
    partner[order] = order.roll(-1)
    return partner


@ATTACKS.register("iad")
class IAD(Attack):
    """Input-Aware Dynamic attack. Defaults: the paper's (mask density 0.032, lambda_div 1,
    lambda_norm 100, backdoor and cross probability 0.1, Adam lr 0.01 with betas (0.5, 0.9),
    25 mask pre-training epochs); ``gen_width``, ``mask_sharpness`` and ``gen_lr_decay`` (per-epoch
    decay of the generator's learning rate; 1 = constant) are our own choices.

    Args:
        target, rate, seed: as for every :class:`~beniful.attacks.base.Attack`.
        cross_rate: share of each training batch in cross mode (another input's trigger, true
            label), in [0, 1); ``rate + cross_rate`` must stay below 1.
        mask_density: the share of pixels a mask may cover before the norm loss acts, in (0, 1].
        lambda_div: weight of the diversity losses (masks in pre-training, patterns in training).
        lambda_norm: weight of the mask norm loss.
        mask_epochs: mask pre-training epochs (0 skips the pre-training).
        gen_lr: Adam learning rate of the generators.
        gen_lr_decay: per-epoch decay of the pattern generator's learning rate, in (0, 1].
        gen_width: hidden channels of both generators.
        mask_sharpness: slope of the sigmoid that makes masks nearly binary.
        batch_size: batch size of the mask pre-training.

    Raises:
        ValueError: any parameter outside the ranges above.
    """

    name = "iad"
    trainable = True
    #: bumped whenever the generators or the training procedure change; part of the cache key,
    #: so models trained by older code are never served from the cache
    VERSION = 2

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0, cross_rate: float = 0.1,
                 mask_density: float = 0.032, lambda_div: float = 1.0, lambda_norm: float = 100.0,
                 mask_epochs: int = 25, gen_lr: float = 0.01, gen_lr_decay: float = 1.0, gen_width: int = 16,
                 mask_sharpness: float = 10.0, batch_size: int = 128) -> None:
        super().__init__(target, rate, seed)
        self.cross_rate = check_fraction(cross_rate, "cross_rate", low_open=False, high_open=True)
        if self.rate + self.cross_rate >= 1:
            raise ValueError(f"rate + cross_rate must be < 1, got {self.rate} + {self.cross_rate}")
        self.mask_density = check_fraction(mask_density, "mask_density")
        for nm, v in (("lambda_div", lambda_div), ("lambda_norm", lambda_norm)):
            if not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{nm} must be a non-negative number, got {v!r}")
        for nm, v in (("mask_epochs", mask_epochs), ("gen_width", gen_width), ("batch_size", batch_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if nm == "mask_epochs" else 1):
                raise ValueError(f"{nm} must be a {'non-negative' if nm == 'mask_epochs' else 'positive'} "
                                 f"integer, got {v!r}")
        if not isinstance(gen_lr, (int, float)) or not gen_lr > 0:
            raise ValueError(f"gen_lr must be positive, got {gen_lr!r}")
        if not isinstance(gen_lr_decay, (int, float)) or not 0 < gen_lr_decay <= 1:
            raise ValueError(f"gen_lr_decay must be in (0, 1], got {gen_lr_decay!r}")
        if not isinstance(mask_sharpness, (int, float)) or not mask_sharpness > 0:
            raise ValueError(f"mask_sharpness must be positive, got {mask_sharpness!r}")
        self.lambda_div, self.lambda_norm = float(lambda_div), float(lambda_norm)
        self.mask_epochs, self.gen_lr, self.gen_width = mask_epochs, float(gen_lr), gen_width
        self.gen_lr_decay = float(gen_lr_decay)
        self.epochs_done = 0  # joint-training epochs so far (sets the decayed learning rate)
        self.mask_sharpness, self.batch_size = float(mask_sharpness), batch_size
        self.mask_net: TriggerNet | None = None
        self.pattern_net: TriggerNet | None = None
        self._opt: torch.optim.Adam | None = None

    # ------------------------------------------------------------------ networks
    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        """Fresh generators, initialised from ``seed`` without touching the global RNG stream."""
        c = shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 7717)
            self.mask_net = TriggerNet(c, 1, self.gen_width)
            self.pattern_net = TriggerNet(c, c, self.gen_width)
            # start the masks at the target density, so the norm loss does not first drive every
            # logit far negative (where the sharpened sigmoid has no gradient left: dead masks)
            nn.init.constant_(self.mask_net.out.bias, math.log(self.mask_density / (1 - self.mask_density))
                              / self.mask_sharpness)
        self.mask_net.requires_grad_(False).eval()
        self.pattern_net.eval()
        self._opt = self._new_optimizer(self.pattern_net.parameters())

    def _new_optimizer(self, params, lr: float | None = None) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.gen_lr if lr is None else lr, betas=(0.5, 0.9))

    def current_lr(self) -> float:
        """Pattern-generator learning rate after ``epochs_done`` epochs: ``gen_lr * gen_lr_decay ** epochs``.

        Returns:
            The learning rate the next epoch uses.
        """
        return self.gen_lr * self.gen_lr_decay ** self.epochs_done

    def _require_nets(self) -> tuple[TriggerNet, TriggerNet]:
        if self.mask_net is None or self.pattern_net is None:
            raise RuntimeError("iad: call setup(shape) (or apply/begin_training) before using the generators")
        return self.mask_net, self.pattern_net

    def to(self, device: torch.device | str) -> "IAD":
        """Move the trigger tensors, both generators and the optimiser's moments to ``device``.

        Args:
            device: the target device.

        Returns:
            The attack itself.
        """
        super().to(device)
        if self.mask_net is not None and self.pattern_net is not None:
            if next(self.mask_net.parameters()).device == torch.empty(0, device=device).device:
                return self  # setup() calls to() on every batch: keep that free
            self.mask_net.to(device)
            self.pattern_net.to(device)
            if self._opt is not None and self._opt.state:
                self._opt.load_state_dict(self._opt.state_dict())  # re-casts moments onto the params' device
        return self

    def masks(self, x: Tensor) -> Tensor:
        """M(x): a nearly binary N x 1 x H x W mask (sharpened sigmoid).

        Args:
            x: float images in [0, 1], ``N x C x H x W``.

        Returns:
            The masks, values in (0, 1).

        Raises:
            RuntimeError: the generators are not built yet (call ``setup`` first).
        """
        m, _ = self._require_nets()
        return torch.sigmoid(self.mask_sharpness * m(x))

    def patterns(self, x: Tensor) -> Tensor:
        """G(x): an N x C x H x W pattern in [0, 1].

        Args:
            x: float images in [0, 1], ``N x C x H x W``.

        Returns:
            The patterns, carrying the pattern generator's graph.

        Raises:
            RuntimeError: the generators are not built yet (call ``setup`` first).
        """
        _, g = self._require_nets()
        return torch.sigmoid(g(x))

    @staticmethod
    def _blend(x: Tensor, mask: Tensor, pattern: Tensor) -> Tensor:
        return (1 - mask) * x + mask * pattern

    def _apply(self, x: Tensor) -> Tensor:
        return self._blend(x, self.masks(x), self.patterns(x))

    # ------------------------------------------------------------------ phase 1: mask pre-training
    def begin_training(self, x_train: Tensor, y_train: Tensor, device: torch.device, progress: bool = False) -> None:
        """Pre-train and freeze the mask generator (paper Sec. 3.3, mask diversity + norm loss).

        Args:
            x_train: the training images, ``uint8`` or float in [0, 1] (kept as they are: each
                pre-training batch is converted on its own, so no float copy of the set is made).
            y_train: their labels (unused: the mask loss needs none).
            device: where the generators train.
            progress: unused; the pre-training is short.
        """
        self.setup(tuple(x_train.shape[1:]), device)  # type: ignore[arg-type]
        self.pretrain_mask(x_train.to(device), self.mask_epochs)

    def pretrain_mask(self, x: Tensor, epochs: int) -> list[float]:
        """``epochs`` passes of the mask loss over ``x``; returns the mean loss per epoch.

        Args:
            x: images, ``uint8`` or float in [0, 1], on the generators' device (each batch is
                converted to float on its own).
            epochs: passes over ``x``.

        Returns:
            The mean mask loss of each epoch; the mask generator is frozen afterwards.
        """
        m, _ = self._require_nets()
        m.requires_grad_(True).train()
        opt = self._new_optimizer(m.parameters())
        g = torch.Generator(device=x.device).manual_seed(self.seed + 1)
        history = []
        for _ in range(epochs):
            perm = torch.randperm(len(x), generator=g, device=x.device)
            tot, cnt = 0.0, 0
            for s in batches(len(x), self.batch_size):
                xb = x[perm[s]]
                xb = xb.float() / 255 if xb.dtype == torch.uint8 else xb
                if len(xb) < 2:
                    continue
                partner = _derangement(len(xb), g, x.device)
                mb = self.masks(xb)
                div = (_pair_distance(xb, xb[partner]) / (_pair_distance(mb, mb[partner]) + _EPS)).mean()
                norm = F.relu(mb.flatten(1).mean(1) - self.mask_density).mean()
                loss = self.lambda_div * div + self.lambda_norm * norm
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot += float(loss.detach()) * len(xb)
                cnt += len(xb)
            history.append(tot / max(cnt, 1))
        m.requires_grad_(False).eval()
        return history

    # ------------------------------------------------------------------ phase 2: joint training
    def training_batch(self, x: Tensor, y: Tensor, poison_mask: Tensor, generator: torch.Generator | None = None
                       ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Backdoor mode on ``poison_mask`` items, cross mode on ``cross_rate`` of the others.

        Returns images that still carry the pattern generator's graph, so the classifier's loss
        trains ``G`` too, and the pattern diversity loss as the extra loss.

        Args:
            x: a float training batch in [0, 1].
            y: its labels.
            poison_mask: which items are poisoned samples (relabelled to the target).
            generator: source of the cross-mode choice and the partner order.

        Returns:
            ``(x, y, extra_loss)``; ``extra_loss`` is ``None`` while the pattern generator is in
            eval mode.
        """
        self.setup(tuple(x.shape[1:]), x.device)  # type: ignore[arg-type]
        n = len(x)
        if n < 2:
            return super().training_batch(x, y, poison_mask, generator)
        partner = _derangement(n, generator, x.device)
        with torch.no_grad():
            mask = self.masks(x)
        pattern = self.patterns(x)
        poison_mask = poison_mask.to(x.device)
        free = torch.nonzero(~poison_mask).flatten()
        n_cross = min(len(free), int(round(self.cross_rate * n)))
        cross = torch.zeros(n, dtype=torch.bool, device=x.device)
        if n_cross > 0:
            cross[free[torch.randperm(len(free), generator=generator, device=x.device)[:n_cross]]] = True
        bd_img = self._blend(x, mask, pattern)
        cross_img = self._blend(x, mask[partner], pattern[partner])
        pm, cm = poison_mask[:, None, None, None], cross[:, None, None, None]
        x_out = torch.where(pm, bd_img, torch.where(cm, cross_img, x))
        y_out = torch.where(poison_mask, torch.full_like(y, self.target), y)
        div = (_pair_distance(x, x[partner]) / (_pair_distance(pattern, pattern[partner]) + _EPS)).mean()
        extra = self.lambda_div * div if self.pattern_net is not None and self.pattern_net.training else None
        return x_out, y_out, extra

    def parameters(self) -> list[nn.Parameter]:
        """The pattern generator's weights (the mask generator is frozen after pre-training).

        Returns:
            Its parameters; empty before the generators are built.
        """
        return list(self.pattern_net.parameters()) if self.pattern_net is not None else []

    def step(self) -> None:
        """One Adam step of the pattern generator (after the trainer's backward pass)."""
        if self._opt is not None and any(p.grad is not None for p in self.parameters()):
            self._opt.step()

    def end_epoch(self, epoch: int) -> None:
        """Decay the pattern generator's learning rate once per epoch.

        The classifier's cosine schedule ends near zero; a generator still moving at full speed
        then changes the trigger faster than the classifier can follow, and the backdoor fades in
        the last epochs. ``gen_lr_decay < 1`` lets the trigger settle with the classifier.

        Args:
            epoch: the epoch that ended (the count kept in ``epochs_done`` sets the rate).
        """
        self.epochs_done += 1
        if self._opt is not None:
            for group in self._opt.param_groups:
                group["lr"] = self.current_lr()

    def train_mode(self, training: bool) -> None:
        """Switch the pattern generator between training (extra loss on) and eval mode.

        Args:
            training: True during the classifier's training epochs.
        """
        if self.pattern_net is not None:
            self.pattern_net.train(training)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Tensor]:
        """Both generators, the image shape and the pattern optimiser's moments (flat, safetensors-ready).

        Returns:
            Flat name -> tensor entries; empty before the generators are built.
        """
        if self.mask_net is None or self.pattern_net is None or self._shape is None:
            return {}
        out = {"shape": torch.tensor(self._shape, dtype=torch.long),
               "epochs_done": torch.tensor(self.epochs_done, dtype=torch.long)}
        out.update({f"mask.{k}": v.detach() for k, v in self.mask_net.state_dict().items()})
        out.update({f"pattern.{k}": v.detach() for k, v in self.pattern_net.state_dict().items()})
        if self._opt is not None:
            for i, st in self._opt.state_dict()["state"].items():
                for k, v in st.items():
                    if isinstance(v, Tensor):
                        out[f"opt.{i}.{k}"] = v.detach()
        return out

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` saved (generators, shape, optimiser, epochs done).

        Args:
            state: the flat entries of :meth:`state_dict`.

        Raises:
            ValueError: ``state`` has no ``shape`` entry or does not match the generators.
        """
        if "shape" not in state:
            raise ValueError(f"iad state needs a 'shape' entry and both generators; got keys {sorted(state)[:8]}")
        shape = tuple(int(s) for s in state["shape"].tolist())
        dev = next(self.mask_net.parameters()).device if self.mask_net is not None else torch.device("cpu")
        self.setup(shape, dev)  # type: ignore[arg-type]
        m, g = self._require_nets()
        for prefix, net in (("mask.", m), ("pattern.", g)):
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            try:
                net.load_state_dict(sub)
            except RuntimeError as exc:
                raise ValueError(f"iad state does not match the generators ({prefix[:-1]}): {exc}") from None
        opt_state: dict[int, dict[str, Tensor]] = {}
        for k, v in state.items():
            if k.startswith("opt."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = v
        self.epochs_done = int(state["epochs_done"]) if "epochs_done" in state else 0
        self._opt = self._new_optimizer(g.parameters(), self.current_lr())
        if opt_state:
            self._opt.load_state_dict({"state": opt_state, "param_groups": self._opt.state_dict()["param_groups"]})
