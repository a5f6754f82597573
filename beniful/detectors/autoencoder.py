"""Input-space autoencoder baseline, after "Neural Trojans" (Liu, Xie & Srivastava, ICCD 2017).

Neural Trojans puts an autoencoder trained on clean data *in front of* the classifier: the
autoencoder rebuilds what it has learned (benign image content) and not what it never saw, so a
trigger does not survive the reconstruction and the backdoor is not activated. As a detector (the
usual way this defense is run as a baseline) the same autoencoder gives two signals per input ``x``
with reconstruction ``x_hat = AE(x)``:

- ``recon``: the reconstruction error ``r(x) = mean((x - x_hat)^2)`` over pixels: a trigger is
  image content the autoencoder cannot rebuild;
- ``flip``: how much the suspect model's prediction moves when it sees ``x_hat`` instead of ``x``,
  ``f(x) = KL(softmax m(x) || softmax m(x_hat))``: the evidence Neural Trojans relies on (a trigger
  that does not survive reconstruction flips the prediction back from the target class). The KL is
  a continuous version of "the predicted label changed", so clean inputs do not all tie at 0.

Score (``signal="both"``, the default): each signal is log-transformed and standardised with its
median and inter-quartile range on the *held-out* clean images (the calibration part the base
class keeps), and the two are summed. Why this common scale: the two signals have unrelated units
(squared pixels vs nats) and heavy right tails, which the log tames (a KL spans orders of magnitude
on clean inputs); the held-out part, not the fit part, because the autoencoder has partly memorised its
~140 fit images, whose errors would understate the clean spread of ``recon`` and overweight it; the
median and IQR, not the mean and std, because one clean image the model already misclassifies can
carry a huge KL and would dominate a std of ~60 values. With no triggered data to tune on, equal
weights in these units are the neutral choice. ``signal="recon"`` or ``"flip"`` gives one signal
alone; one fit serves all three (``thresholds``, ``scores_by_signal``).

Architecture (ours: the paper gives no recipe at CIFAR scale): sized from the image shape alone, so
it works on 1x28x28, 3x32x32, 3x64x64 or 8x8 alike. Stride-2 convs (BatchNorm, SiLU) halve the map
until it is at most 4x4 (28 -> 14 -> 7 -> 4), a linear layer squeezes it into a ``latent_dim`` code
(the bottleneck that keeps a trigger out), and a mirrored transposed-conv decoder returns the exact
recorded sizes, with a sigmoid onto [0, 1] (:class:`ImageAutoencoder`).

Defaults (ours, sized for the quick profile: ~140 fit images of 1x28x28 and a CPU budget):
``width=32`` channels, ``latent_dim=64``, ``steps=500`` Adam steps of ``ae_batch_size=64`` at
``lr=5e-3`` with a cosine schedule, and a random shift of up to ``shift=2`` pixels (replicate
padding) per training image: a light augmentation that gives the decoder more than 140 distinct
images to learn from. Measured with the quick profile's 200 clean mnist5k digits (140 fit, 60
calibrate), scoring 200 test digits against the same digits with a 3x3 white corner patch (recon
signal alone, seeds 0-5): AUROC 0.98-0.99, and 0.73-0.76 with ``shift=0``. BatchNorm made the fit
reliable: without it, at this learning rate, one seed in six stalled on the mean image. A fit takes
~12 s on one CPU thread beside other jobs, about what the BeniFul VAE's takes there.

Cost: ``flip`` and ``both`` run the suspect model on ``x`` and ``x_hat`` in one doubled batch (2
forward passes per input) plus one autoencoder pass; ``recon`` never runs the suspect model (0).
Fits are deterministic for a seed: the weights, batches and shifts come from generators seeded with
it, and CUDA convolutions run with cuDNN's deterministic algorithms during the fit.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm  # text bars: tqdm.auto warns "IProgress not found" in kernels without ipywidgets

from ..metrics import threshold_at_fpr
from ..utils import as_images, batches, check_positive_int
from .base import Detector
from .registry import DETECTORS

__all__ = ["AutoencoderDetector", "ImageAutoencoder", "SIGNALS", "shifted"]

SIGNALS = ("both", "recon", "flip")
_EPS = 1e-6
#: floor of a signal's IQR in log units, so a calibration set whose values all tie does not divide by 0
_MIN_SCALE = 1e-3


class ImageAutoencoder(nn.Module):
    """Convolutional autoencoder on images ``C x H x W`` in [0, 1] with a dense ``latent_dim`` bottleneck.

    Encoder: stride-2 3x3 convs (each followed by BatchNorm and SiLU) until the map is at most 4x4,
    then a linear layer into the code; the decoder mirrors it with stride-2 transposed convs that
    return the exact recorded sizes (odd maps such as 7x7 included) and a sigmoid onto [0, 1].
    BatchNorm is there for the fit, not for capacity: without it, at the learning rate a few hundred
    steps need, some seeds stalled on the mean image (one in six on 140 digits).

    Args:
        shape: the image shape ``(C, H, W)``.
        width: channels of the conv stack (the full-size stage, the costly one, has half, at least 8).
        latent_dim: size of the code between encoder and decoder.

    Raises:
        ValueError: ``shape`` is not three positive sizes, or ``width`` / ``latent_dim`` is not a
            positive integer.
    """

    def __init__(self, shape: tuple[int, ...], width: int = 32, latent_dim: int = 64) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or any(s < 1 for s in shape):
            raise ValueError(f"image shape must be (C, H, W) with positive sizes, got {shape}")
        check_positive_int(width, "width")
        check_positive_int(latent_dim, "latent_dim")
        self.shape = shape
        c, h, w = shape
        self.sizes: list[tuple[int, int]] = [(h, w)]
        chans = [c]
        enc: list[nn.Module] = []
        while min(h, w) > 4 or len(self.sizes) == 1:  # at least one stride-2 step, even for tiny images
            h, w = (h + 1) // 2, (w + 1) // 2
            out = max(8, width // 2) if len(chans) == 1 else width
            enc += [nn.Conv2d(chans[-1], out, 3, 2, 1), nn.BatchNorm2d(out), nn.SiLU()]
            chans.append(out)
            self.sizes.append((h, w))
        self.bottom = chans[-1]  # channels of the smallest map
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(self.bottom * h * w, latent_dim))
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, self.bottom * h * w), nn.SiLU())
        # mirrored: the step into sizes[k] maps chans[k + 1] -> chans[k] channels; all but the last
        # (onto the image) are followed by BatchNorm and SiLU
        self.ups = nn.ModuleList(nn.ConvTranspose2d(chans[k + 1], chans[k], 3, 2, 1)
                                 for k in reversed(range(len(chans) - 1)))
        self.up_acts = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(chans[k]), nn.SiLU())
                                     for k in reversed(range(1, len(chans) - 1)))

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruct a batch.

        Args:
            x: images in [0, 1], ``N x C x H x W`` of the autoencoder's shape.

        Returns:
            The reconstructions, same shape, in [0, 1].

        Raises:
            ValueError: ``x`` does not have the image shape the autoencoder was built for.
        """
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"inputs have shape {tuple(x.shape[1:])} but the clean data had {self.shape}")
        h, w = self.sizes[-1]
        t = self.from_latent(self.encoder(x)).view(len(x), self.bottom, h, w)
        for k, up in enumerate(self.ups):
            t = up(t, output_size=list(self.sizes[-2 - k]))
            if k < len(self.up_acts):
                t = self.up_acts[k](t)
        return torch.sigmoid(t)


def shifted(x: Tensor, shift: int, g: torch.Generator) -> Tensor:
    """Each image moved by its own random offset of up to ``shift`` pixels per axis (replicate padding).

    Replicate padding, not zeros: a natural image's border continues instead of gaining a black
    frame the autoencoder would learn as content (digits' black background stays black either way).

    Args:
        x: images ``N x C x H x W`` on any device.
        shift: the largest offset in pixels; 0 returns ``x``.
        g: CPU generator of the offsets (the same offsets on every device).

    Returns:
        The shifted images, same shape and device.
    """
    if shift == 0 or len(x) == 0:
        return x
    n, c, h, w = x.shape
    off = torch.randint(0, 2 * shift + 1, (2, n), generator=g).to(x.device)
    xp = F.pad(x, (shift,) * 4, mode="replicate")
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return xp[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(c, device=x.device)[None, :, None, None],
              rows, cols]


@DETECTORS.register("autoencoder")
class AutoencoderDetector(Detector):
    """Input-space autoencoder (Neural Trojans): reconstruction error + prediction flip on the reconstruction.

    Args:
        signal: ``"both"`` (default), ``"recon"`` or ``"flip"``: which signal(s) make the score.
        latent_dim: size of the autoencoder's bottleneck code.
        width: channels of the autoencoder's conv stack.
        steps: Adam steps of the autoencoder fit.
        lr: Adam's learning rate (annealed to 0 by a cosine schedule).
        ae_batch_size: clean images per fit step.
        shift: largest random shift in pixels of a training image (0: no augmentation).
        **kwargs: :class:`~beniful.detectors.base.Detector`'s parameters (``fpr``, ``seed``, ...).

    Raises:
        ValueError: an unknown ``signal``, a non-positive ``latent_dim``, ``width``, ``steps`` or
            ``ae_batch_size``, a non-positive ``lr`` or a negative ``shift``.
    """

    name = "autoencoder"
    forward_passes = 2.0  # set per signal in __init__
    #: ``flip`` runs the model on the input and its reconstruction in one doubled batch
    inputs_per_item = 2

    def __init__(self, signal: str = "both", latent_dim: int = 64, width: int = 32, steps: int = 500,
                 lr: float = 5e-3, ae_batch_size: int = 64, shift: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; valid signals: {', '.join(SIGNALS)}")
        for nm, v in (("latent_dim", latent_dim), ("width", width), ("steps", steps), ("ae_batch_size", ae_batch_size)):
            check_positive_int(v, nm)
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if not isinstance(shift, int) or isinstance(shift, bool) or shift < 0:
            raise ValueError(f"shift must be a non-negative integer (pixels), got {shift!r}")
        self.signal, self.latent_dim, self.width, self.steps = signal, latent_dim, width, steps
        self.lr, self.ae_batch_size, self.shift = float(lr), ae_batch_size, shift
        self.forward_passes = 0.0 if signal == "recon" else 2.0
        self.inputs_per_item = 1 if signal == "recon" else 2
        self.ae: ImageAutoencoder | None = None
        #: mean training loss (squared pixel error) over each block of ``steps // 10`` steps (the last may be shorter)
        self.history: list[float] = []
        #: (median, IQR) of log recon and log flip on the held-out clean images
        self.stats: dict[str, tuple[float, float]] = {}
        self.thresholds: dict[str, float] = {}

    # ------------------------------------------------------------------ fit
    def _fit(self, x: Tensor, y: Tensor) -> None:
        if len(x) < 2:
            raise ValueError(f"the autoencoder needs at least 2 clean images to fit, got {len(x)}")
        dev = self.device
        # the weights come from the detector's seed, not whatever the global RNG holds
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 23)
            self.ae = ImageAutoencoder(tuple(x.shape[1:]), self.width, self.latent_dim).to(dev)
        g = torch.Generator().manual_seed(self.seed + 29)  # batches and shifts, drawn on the CPU
        opt = torch.optim.Adam(self.ae.parameters(), lr=self.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.steps)
        data, n, bs = x.to(dev), len(x), min(self.ae_batch_size, len(x))
        order = torch.empty(0, dtype=torch.long)
        self.history, tenth, acc, seen = [], max(1, self.steps // 10), 0.0, 0
        self.ae.train()
        # cuDNN's deterministic algorithms: the same seed gives the same fit on CUDA too
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            for step in tqdm(range(self.steps), desc=self.name, disable=not self.progress, leave=False):
                if len(order) < bs:  # epochs of a fresh permutation: every image seen equally often
                    order = torch.cat([order, torch.randperm(n, generator=g)])
                idx, order = order[:bs], order[bs:]
                xb = shifted(data[idx.to(dev)], self.shift, g)
                loss = F.mse_loss(self.ae(xb), xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                acc, seen = acc + float(loss.detach()), seen + 1
                if seen == tenth or step == self.steps - 1:
                    self.history.append(acc / seen)
                    acc, seen = 0.0, 0
        self.ae.eval().requires_grad_(False)
        self.stats, self.thresholds = {}, {}

    # ------------------------------------------------------------------ signals
    def reconstruct(self, x: Any) -> Tensor:
        """The autoencoder's reconstructions (what Neural Trojans feeds the classifier instead of ``x``).

        Args:
            x: inputs in any form :meth:`~beniful.detectors.base.Detector.score` accepts.

        Returns:
            CPU float tensor of the same shape as the images, in [0, 1].

        Raises:
            RuntimeError: the detector is not fitted.
            ValueError: images outside [0, 1] or of another shape than the clean data's.
        """
        self._require_fit()
        assert self.ae is not None
        x = as_images(x)
        with torch.no_grad():
            out = [self.ae(x[s].to(self.device)).cpu() for s in batches(len(x), self.score_batch_size(x))]
        return torch.cat(out) if out else x[:0].float()

    def _raw(self, x: Tensor, flip: bool = True) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """(recon, flip, pred, pred_rec) of one batch on the device; the last three are None without ``flip``."""
        assert self.ae is not None and self.model is not None
        x = x.float()
        x_hat = self.ae(x)
        r = (x - x_hat).pow(2).flatten(1).mean(1)
        if not flip:
            return r, None, None, None
        logits = self.model(torch.cat([x, x_hat])).float()
        lp, lq = F.log_softmax(logits[: len(x)], 1), F.log_softmax(logits[len(x):], 1)
        f = (lp.exp() * (lp - lq)).sum(1).clamp_min(0)
        return r, f, lp.argmax(1), lq.argmax(1)

    @torch.no_grad()
    def signals(self, x: Any) -> dict[str, Tensor]:
        """Raw per-input signals, before standardisation (for figures and ablations).

        Args:
            x: inputs in any form :meth:`~beniful.detectors.base.Detector.score` accepts.

        Returns:
            CPU tensors ``[N]``: ``recon`` (mean squared pixel error), ``flip`` (KL in nats), and the
            model's predictions ``pred`` on the inputs and ``pred_rec`` on their reconstructions.

        Raises:
            RuntimeError: the detector is not fitted.
            ValueError: images outside [0, 1] or of another shape than the clean data's.
        """
        self._require_fit()
        x = as_images(x)
        out: dict[str, list[Tensor]] = {"recon": [], "flip": [], "pred": [], "pred_rec": []}
        for s in batches(len(x), self._flip_batch_size(x)):
            for k, v in zip(out, self._raw(x[s].to(self.device))):
                assert v is not None
                out[k].append(v.cpu())
        return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}

    def _flip_batch_size(self, x: Tensor) -> int:
        """Batch size of the doubled batch :meth:`signals` runs (a ``recon`` detector's score does not)."""
        saved, self.inputs_per_item = self.inputs_per_item, 2
        try:
            return self.score_batch_size(x)
        finally:
            self.inputs_per_item = saved

    def combine(self, recon: Tensor, flip: Tensor | None, signal: str | None = None) -> Tensor:
        """The score of raw signals (from :meth:`signals`) on the common, standardised scale.

        Args:
            recon: raw reconstruction errors.
            flip: raw prediction-flip KLs (may be None for ``signal="recon"``).
            signal: ``"both"``, ``"recon"`` or ``"flip"``; default the detector's own.

        Returns:
            Float64 scores, comparable with ``thresholds[signal]``.

        Raises:
            RuntimeError: the detector is not calibrated.
            ValueError: an unknown ``signal``, or no ``flip`` values for a signal that needs them.
        """
        signal = signal or self.signal
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; valid signals: {', '.join(SIGNALS)}")
        if not self.stats:
            raise RuntimeError("autoencoder detector is not calibrated: call .fit(model, clean)")
        z = {}
        for name, v in (("recon", recon), ("flip", flip)):
            if v is not None:
                med, scale = self.stats[name]
                z[name] = (torch.log(v.double() + _EPS) - med) / scale
        if signal != "recon" and "flip" not in z:
            raise ValueError(f"signal {signal!r} needs the flip values")
        return z["recon"] + z["flip"] if signal == "both" else z[signal]

    def calibrate(self, x_clean: Any) -> float:
        """Standardisation statistics of both signals, then a threshold per signal, on held-out clean images.

        Args:
            x_clean: clean images the autoencoder was not fitted on, in any form ``score`` accepts.

        Returns:
            The threshold of the detector's own ``signal`` (all three are in ``thresholds``).

        Raises:
            ValueError: ``x_clean`` is empty.
        """
        sig = self.signals(x_clean)
        if len(sig["recon"]) == 0:
            raise ValueError("calibration needs at least one held-out clean image, got none")
        for k in ("recon", "flip"):
            lv = torch.log(sig[k].double() + _EPS)
            q1, med, q3 = (float(torch.quantile(lv, q)) for q in (0.25, 0.5, 0.75))
            self.stats[k] = (med, max(q3 - q1, _MIN_SCALE))
        self.thresholds = {k: threshold_at_fpr(self.combine(sig["recon"], sig["flip"], k), self.fpr) for k in SIGNALS}
        self.threshold = self.thresholds[self.signal]
        return self.threshold

    def scores_by_signal(self, x: Any) -> dict[str, Tensor]:
        """Scores of every signal choice from one pass over ``x`` (the recon / flip / both ablation).

        Args:
            x: inputs in any form ``score`` accepts.

        Returns:
            ``{"both": scores, "recon": scores, "flip": scores}``, float tensors ``[N]``.
        """
        sig = self.signals(x)
        return {k: self.combine(sig["recon"], sig["flip"], k).float() for k in SIGNALS}

    def _score(self, x: Tensor) -> Tensor:
        r, f, _, _ = self._raw(x, flip=self.signal != "recon")
        return self.combine(r, f)
