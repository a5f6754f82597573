"""The variational auto-encoder BeniFul trains on benign middle features (Li et al., 2024, arXiv 2410.14723).

The paper's detector rests on one property: a VAE that has only seen the middle features ``h(x)`` of
benign inputs rebuilds benign features well and triggered ones badly (it maps them back onto the
benign manifold). The paper does not give the architecture, so this one is sized from the feature
shape alone, which lets it sit on any layer of any model:

- ``C x H x W`` features: a small conv encoder (3x3 convs, stride-2 steps until the map is at most
  4x4) into a ``latent_dim`` Gaussian, and a mirrored decoder that upsamples to the exact recorded
  sizes (so odd maps such as 7x7 work).
- flat ``D`` features: a two-layer MLP encoder/decoder.

Features are standardised per channel with the clean statistics (stored as buffers), because the
scale of a middle layer is arbitrary; ``reconstruct`` returns features in the original scale so
that the rest of the network can run on them. Loss (Kingma & Welling, 2014; beta-VAE, Higgins et
al., 2017): per-sample sum of squared errors in standardised space + ``beta`` * KL(q(z|h) || N(0, I)).
"""
from __future__ import annotations

import math
from typing import Iterable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm  # text bars: tqdm.auto warns "IProgress not found" in kernels without ipywidgets

from .utils import batches, resolve_device

__all__ = ["FeatureVAE", "FeatureSource", "vae_loss", "train_vae", "streamed_moments"]


class FeatureSource(Protocol):
    """Features computed on demand, for a clean set whose features would not fit in memory at once.

    A ``Tensor`` of features is one too; the BeniFul detector's streamed source computes each
    batch's features from the clean images when asked (see :class:`~beniful.detectors.beniful.BeniFulDetector`).
    """

    def __len__(self) -> int:
        """Number of feature vectors."""

    def __getitem__(self, idx: Tensor) -> Tensor:
        """Features of the items ``idx`` (a CPU ``LongTensor``), batch first, on any device."""


def streamed_moments(parts: Iterable[Tensor], dims: Sequence[int]) -> tuple[Tensor, Tensor, int]:
    """Mean and unbiased std over ``dims`` of the concatenation of ``parts``, one part at a time.

    Each part's mean and sum of squared deviations are taken in float64 and merged with Chan et
    al.'s pairwise update (1979), so no large sum of squares is ever subtracted from another: the
    result agrees with ``torch.cat(parts).std(dims)`` to float32 rounding without holding the
    concatenation.

    Args:
        parts: tensors of equal shape except the first dimension (batches of features).
        dims: the dimensions to reduce, including 0 (e.g. ``[0, 2, 3]`` for per-channel statistics).

    Returns:
        ``(mean, std, count)``: float64 tensors of the kept dimensions and the number of values
        reduced per entry.

    Raises:
        ValueError: no part, or fewer than 2 values per entry.
    """
    count, mean, m2 = 0, None, None
    for part in parts:
        p = part.double()
        k = p.numel() // math.prod(p.shape[d] for d in range(p.ndim) if d not in dims)
        if k == 0:
            continue
        pm = p.mean(dims)
        shape = [1 if d in dims else p.shape[d] for d in range(p.ndim)]
        pm2 = ((p - pm.view(shape)) ** 2).sum(dims)
        if mean is None:
            count, mean, m2 = k, pm, pm2
            continue
        delta = pm - mean
        total = count + k
        mean = mean + delta * (k / total)
        m2 = m2 + pm2 + delta ** 2 * (count * k / total)
        count = total
    if mean is None or m2 is None or count < 2:
        raise ValueError(f"need at least 2 values per entry to take a standard deviation, got {count}")
    return mean, (m2 / (count - 1)).sqrt(), count


def _hidden_channels(c: int) -> int:
    """Width of the conv stack: half the feature's channel count, kept within [16, 128]."""
    return int(min(128, max(16, c // 2)))


class FeatureVAE(nn.Module):
    """VAE over middle features of shape ``(C, H, W)`` or ``(D,)``.

    Args:
        shape: the feature shape without the batch dimension: ``(C, H, W)`` (convolutional encoder
            and decoder) or ``(D,)`` (fully connected).
        latent_dim: size of the latent code ``z``.
        hidden: hidden channels (or units); ``None`` picks them from the feature's channel count.

    Raises:
        ValueError: ``shape`` is not 1-D or 3-D with positive sizes, or ``latent_dim`` is not a
            positive integer.
    """

    def __init__(self, shape: Sequence[int], latent_dim: int = 32, hidden: int | None = None) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (1, 3) or any(s < 1 for s in shape):
            raise ValueError(f"feature shape must be (C, H, W) or (D,) with positive sizes, got {shape}")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.shape, self.latent_dim = shape, latent_dim
        ch = shape[0]
        self.register_buffer("mean", torch.zeros(ch))
        self.register_buffer("std", torch.ones(ch))
        act = nn.SiLU
        if len(shape) == 3:
            c, h, w = shape
            hid = hidden or _hidden_channels(c)
            enc: list[nn.Module] = [nn.Conv2d(c, hid, 3, 1, 1), act()]
            self.sizes: list[tuple[int, int]] = [(h, w)]
            while min(h, w) > 4:
                h, w = (h + 1) // 2, (w + 1) // 2
                enc += [nn.Conv2d(hid, hid, 3, 2, 1), act()]
                self.sizes.append((h, w))
            enc += [nn.Conv2d(hid, hid, 3, 1, 1), act(), nn.Flatten()]
            self.encoder = nn.Sequential(*enc)
            flat = hid * h * w
            self.to_stats = nn.Linear(flat, 2 * latent_dim)
            self.from_latent = nn.Sequential(nn.Linear(latent_dim, flat), act())
            self.hid = hid
            ups = nn.ModuleList()
            for _ in self.sizes[:-1]:
                ups.append(nn.Sequential(nn.Conv2d(hid, hid, 3, 1, 1), act()))
            self.ups = ups
            self.head = nn.Sequential(nn.Conv2d(hid, hid, 3, 1, 1), act(), nn.Conv2d(hid, c, 3, 1, 1))
        else:
            d = shape[0]
            hid = hidden or int(min(512, max(64, d)))
            self.encoder = nn.Sequential(nn.Linear(d, hid), act(), nn.Linear(hid, hid), act())
            self.to_stats = nn.Linear(hid, 2 * latent_dim)
            self.from_latent = nn.Sequential(nn.Linear(latent_dim, hid), act())
            self.head = nn.Sequential(nn.Linear(hid, hid), act(), nn.Linear(hid, d))
            self.hid = hid

    # ------------------------------------------------------------------ standardisation
    def _view(self, t: Tensor) -> Tensor:
        return t.view(1, -1, 1, 1) if len(self.shape) == 3 else t.view(1, -1)

    @torch.no_grad()
    def set_normalization(self, feats: Tensor | Iterable[Tensor]) -> None:
        """Per-channel mean/std of clean features (std floored so dead channels do not blow up).

        Args:
            feats: clean features, ``N`` x the VAE's feature shape; or an iterable of batches of
                them, reduced one batch at a time (:func:`streamed_moments`, float64) for a clean
                set whose features do not fit in memory together. The statistics are stored in the
                ``mean`` and ``std`` buffers.
        """
        dims = [0, 2, 3] if len(self.shape) == 3 else [0]
        if isinstance(feats, Tensor):
            mean, std = feats.float().mean(dims), feats.float().std(dims)
        else:
            mean64, std64, _ = streamed_moments(feats, dims)
            mean, std = mean64.float(), std64.float()
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-3 * float(std.max().clamp_min(1e-8))))

    def normalize(self, h: Tensor) -> Tensor:
        """Standardise features per channel with the clean statistics.

        Args:
            h: features in their original scale.

        Returns:
            ``(h - mean) / std`` as float.
        """
        return (h.float() - self._view(self.mean)) / self._view(self.std)

    def denormalize(self, u: Tensor) -> Tensor:
        """Undo :meth:`normalize`.

        Args:
            u: standardised features.

        Returns:
            ``u * std + mean``, in the feature's original scale.
        """
        return u * self._view(self.std) + self._view(self.mean)

    # ------------------------------------------------------------------ VAE
    def _check(self, h: Tensor) -> None:
        if tuple(h.shape[1:]) != self.shape:
            raise ValueError(f"FeatureVAE built for features {self.shape}, got {tuple(h.shape[1:])}")

    def encode(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Standardised features -> (mu, logvar) of q(z | h).

        Args:
            u: standardised features, batch first.

        Returns:
            ``(mu, logvar)``, each ``N x latent_dim``; ``logvar`` is clamped to [-12, 8] for stability.
        """
        stats = self.to_stats(self.encoder(u))
        mu, logvar = stats.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: Tensor) -> Tensor:
        """Latent -> standardised features.

        Args:
            z: latent codes, ``N x latent_dim``.

        Returns:
            Standardised features, ``N`` x the feature shape.
        """
        t = self.from_latent(z)
        if len(self.shape) == 1:
            return self.head(t)
        h, w = self.sizes[-1]
        t = t.view(len(z), self.hid, h, w)
        for up, size in zip(self.ups, reversed(self.sizes[:-1])):
            t = up(F.interpolate(t, size=size, mode="nearest"))
        return self.head(t)

    def forward(self, u: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Standardised features -> (reconstruction from a sampled z, mu, logvar).

        Args:
            u: standardised features, batch first.
            generator: source of the reparameterisation noise (for reproducible training).

        Returns:
            ``(reconstruction, mu, logvar)``; the reconstruction is standardised, like ``u``.
        """
        mu, logvar = self.encode(u)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar

    def reconstruct(self, h: Tensor) -> Tensor:
        """``h_hat = Dec(mu(Enc(h)))`` in the feature's original scale (the deterministic mean path).

        Args:
            h: features in their original scale, ``N`` x the VAE's feature shape.

        Returns:
            The reconstruction ``h_hat``, same shape and dtype as ``h``.

        Raises:
            ValueError: ``h`` does not have the feature shape the VAE was built for.
        """
        self._check(h)
        mu, _ = self.encode(self.normalize(h))
        return self.denormalize(self.decode(mu)).to(h.dtype)

    def distance(self, h: Tensor, h_hat: Tensor) -> Tensor:
        """Reconstruction distance r: mean squared error per sample in standardised space, shape [N].

        Args:
            h: features in their original scale.
            h_hat: their reconstructions (:meth:`reconstruct`).

        Returns:
            One distance per sample, ``[N]``.
        """
        d = (self.normalize(h) - self.normalize(h_hat)) ** 2
        return d.flatten(1).mean(1)


def vae_loss(vae: FeatureVAE, u: Tensor, beta: float = 1.0, generator: torch.Generator | None = None
             ) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, reconstruction, KL), each a batch mean of per-sample sums; loss = rec + beta * KL.

    Args:
        vae: the model.
        u: a batch of standardised features.
        beta: weight of the KL term.
        generator: source of the reparameterisation noise.

    Returns:
        ``(loss, reconstruction error, KL)``, scalar tensors; ``loss`` carries the graph.
    """
    rec_u, mu, logvar = vae(u, generator)
    rec = ((rec_u - u) ** 2).flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return rec + beta * kl, rec, kl


def train_vae(vae: FeatureVAE, feats: Tensor | FeatureSource, *, epochs: int = 200, lr: float = 1e-3, batch_size: int = 64,
              beta: float = 1.0, seed: int = 0, device: str | torch.device = "auto", progress: bool = False,
              weight_decay: float = 0.0) -> list[float]:
    """Fit ``vae`` on clean middle features ``feats`` (N x feature shape); returns the loss per epoch
    (per-sample loss divided by the number of feature elements, so runs are comparable across layers).

    Sets the standardisation statistics from ``feats`` first. Adam with a cosine schedule;
    batches and the reparameterisation noise come from a generator seeded with ``seed``.

    ``feats`` is either a tensor (standardised once and held on ``device``: fast, but it takes
    about three times the features' size there at its peak) or a :class:`FeatureSource` that
    computes features on demand (streamed: the statistics in one pass of ``batch_size`` items, then
    every step asks for its own batch; the device holds one batch). Both see the same batches in
    the same order with the same noise, so they train the same VAE up to the float rounding of
    the features and of the statistics.

    Args:
        vae: the model to fit; moved to ``device`` and left in eval mode.
        feats: clean middle features, ``N`` (at least 2) x the VAE's feature shape, or a source of them.
        epochs: passes over ``feats``.
        lr: Adam's learning rate (annealed to 0 by a cosine schedule).
        batch_size: features per step.
        beta: weight of the KL term.
        seed: seeds the batch order and the reparameterisation noise.
        device: ``"auto"`` (CUDA when present), a device name or a device.
        progress: show a progress bar.
        weight_decay: Adam's weight decay.

    Returns:
        The mean loss of each epoch, per feature element.

    Raises:
        ValueError: a non-positive ``epochs``, ``batch_size`` or ``lr``, a negative ``beta``,
            fewer than 2 features, or features of the wrong shape.
    """
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta!r}")
    if len(feats) < 2:
        raise ValueError(f"need at least 2 feature vectors to train the VAE, got {len(feats)}")
    dev = resolve_device(device)
    vae.to(dev)
    n = len(feats)
    if isinstance(feats, Tensor):
        vae._check(feats)
        vae.set_normalization(feats.to(dev))
        u_all = vae.normalize(feats.to(dev)).detach()

        def batch(idx: Tensor) -> Tensor:
            return u_all[idx.to(dev)]
    else:
        source = feats

        def fetch(idx: Tensor) -> Tensor:
            h = source[idx].to(dev)
            vae._check(h)
            return h

        vae.set_normalization(fetch(torch.arange(s.start, s.stop)) for s in batches(n, batch_size))

        def batch(idx: Tensor) -> Tensor:
            return vae.normalize(fetch(idx)).detach()
    g = torch.Generator(device=dev).manual_seed(seed)
    g_cpu = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(vae.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    numel = math.prod(vae.shape)
    history: list[float] = []
    vae.train()
    bar = tqdm(range(epochs), desc="vae", disable=not progress, leave=False)
    for _ in bar:
        perm = torch.randperm(n, generator=g_cpu)
        tot = 0.0
        for s in batches(n, batch_size):
            u = batch(perm[s])
            loss, _, _ = vae_loss(vae, u, beta, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(u)
        history.append(tot / n / numel)
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    vae.eval()
    return history
