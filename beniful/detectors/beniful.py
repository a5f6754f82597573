"""BeniFul backdoor input detection (BeniFul-BID; Li et al., 2024, arXiv 2410.14723, Part 1).

Write the suspect classifier as ``f = g(h(x))`` with ``h`` the output of submodule ``layer``.

1. Fit: a :class:`~beniful.vae.FeatureVAE` learns ``h(x)`` of the defender's clean data (the fit
   part; the base class keeps the rest for calibration). The suspect model stays frozen.
2. Two signals per input (our reconstruction of the paper's description):

   - reconstruction distance ``r(x) = mse(h(x), h_hat(x))`` with ``h_hat = Dec(mu(Enc(h(x))))``,
     in channel-standardised feature units;
   - inference consistency ``c(x) = KL(softmax f(x) || softmax g(h_hat(x)))`` (or the
     cross-entropy of ``g(h_hat(x))`` at ``f``'s predicted class): a VAE that only saw benign
     features cannot rebuild the trigger's feature, so on a triggered input the prediction from
     the reconstruction leaves the backdoor's target class while ``f`` stays on it.

3. Score: each signal is log-transformed and standardised with the median and inter-quartile range
   of held-out clean inputs (the calibration part), and ``signal="both"`` adds them with weights
   ``r_weight`` and ``c_weight``. ``signal="r"`` or ``"c"`` gives one signal alone (ablation).
   The threshold at the target FPR is calibrated by the base class on the same held-out part.

Cost: ``g(h_hat(x))`` is computed in the same forward pass as ``f(x)`` by doubling the batch inside
a hook at ``layer`` (see :mod:`beniful.features`), so one input costs one front pass, two tail
passes and one small VAE pass; ``forward_passes`` reports ``1 + tail share of the multiply-adds``
(2 when the model needs the two-pass fallback).
"""
from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import cache as cache_mod
from .. import locks
from .. import features, memory, sources
from ..metrics import threshold_at_fpr
from ..utils import as_images, as_tensors, batches, check_layer, resolve_device
from ..vae import FeatureVAE, train_vae
from .base import Detector
from .registry import DETECTORS

SIGNALS = ("both", "r", "c")
#: copies of the clean features the precomputed VAE fit holds on the device at its peak (the
#: features, their standardised copy, one temporary of the standardisation)
PRECOMPUTE_COPIES = 3
CONSISTENCY = ("kl", "ce")
_EPS = 1e-6


@DETECTORS.register("beniful")
class BeniFulDetector(Detector):
    """VAE reconstruction distance + inference consistency on middle features."""

    name = "beniful"
    forward_passes = 1.0  # replaced at fit time by 1 + the measured tail share
    #: the tail after ``layer`` runs on the doubled batch (see :mod:`beniful.features`)
    inputs_per_item = 2
    #: ``cache`` says where a fit is kept, not what it computes
    params_exclude = Detector.params_exclude | {"cache"}

    def __init__(self, layer: str = "layer3", signal: str = "both", latent_dim: int = 64, beta: float = 1.0,
                 vae_epochs: int = 100, vae_lr: float = 2e-3, vae_batch_size: int = 64,
                 consistency: str = "kl", r_weight: float = 1.0, c_weight: float = 1.0,
                 augment: int = 4, cache: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer must be a submodule name such as 'layer3', got {layer!r}")
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; valid signals: {', '.join(SIGNALS)}")
        if consistency not in CONSISTENCY:
            raise ValueError(f"unknown consistency {consistency!r}; valid: {', '.join(CONSISTENCY)}")
        for nm, v in (("latent_dim", latent_dim), ("vae_epochs", vae_epochs), ("vae_batch_size", vae_batch_size)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{nm} must be a positive integer, got {v!r}")
        if not isinstance(augment, int) or augment < 0:
            raise ValueError(f"augment must be a non-negative integer, got {augment!r}")
        for nm, v in (("beta", beta), ("r_weight", r_weight), ("c_weight", c_weight)):
            if not v >= 0:
                raise ValueError(f"{nm} must be >= 0, got {v!r}")
        if not vae_lr > 0:
            raise ValueError(f"vae_lr must be positive, got {vae_lr!r}")
        self.layer, self.signal, self.latent_dim, self.beta = layer, signal, latent_dim, float(beta)
        self.vae_epochs, self.vae_lr, self.vae_batch_size = vae_epochs, float(vae_lr), vae_batch_size
        self.consistency, self.r_weight, self.c_weight = consistency, float(r_weight), float(c_weight)
        self.augment = augment
        if not isinstance(cache, bool):
            raise ValueError(f"cache must be True or False, got {cache!r}")
        self.cache = cache
        #: True when the last fit was loaded from the cache
        self.from_cache = False
        self.vae: FeatureVAE | None = None
        self.input_shape: tuple[int, ...] | None = None
        self.vae_history: list[float] = []
        #: whether the last fit streamed the clean features (they did not fit the memory budget)
        self.streamed = False
        self.batched = True
        #: (median, scale) of log r and log c on held-out clean inputs
        self.stats: dict[str, tuple[float, float]] = {}
        self.thresholds: dict[str, float] = {}

    # ------------------------------------------------------------------ fit (cached)
    def fit(self, model: nn.Module, clean: Any) -> "BeniFulDetector":
        """Fit as the base class does. With ``cache=True`` the fitted VAE, its calibration and the
        threshold are stored in the package cache (safetensors + JSON, see :mod:`beniful.cache`) under
        a key made of the model's weights, the clean data, every parameter and the source of the
        detector: the notebooks fit the same detector on the same model many times (table2, fig2,
        fig3, fig4, table4 and each BeniFul repair), and a hit skips the VAE training. The fit holds
        the entry's lock (:mod:`beniful.locks`), so concurrent jobs fit it once. Nothing is
        executed from the cache; a corrupt entry is refitted.

        Args:
            model: the suspect classifier on images in [0, 1]; it is frozen in place, as in
                :meth:`Detector.fit <beniful.detectors.base.Detector.fit>`.
            clean: the defender's labelled clean data (an ``(x, y)`` tuple, a ``Dataset`` or a
                ``DataLoader``).

        Returns:
            ``self``, fitted and calibrated; :attr:`from_cache` tells whether the fit was loaded.
        """
        self.from_cache = False
        if not self.cache:
            return super().fit(model, clean)
        x, y = as_tensors(clean)
        key = self.cache_key(model, x, y)

        def hit() -> "BeniFulDetector | None":
            entry = cache_mod.load(key, kind="detector")
            if entry is not None and self._restore(model, *entry):
                self.from_cache = True
                return self
            return None

        # one process fits, others asking for the same fit wait on the entry's lock and load it
        return locks.compute_once(key, "detector", hit, lambda: self._fit_and_save(model, x, y, key),
                                  what=f"fitted detector {self.name} {key}")

    def _fit_and_save(self, model: nn.Module, x: Tensor, y: Tensor, key: str) -> "BeniFulDetector":
        super().fit(model, (x, y))
        assert self.vae is not None
        meta = {"detector": self.name, "params": self.params(), "feature_shape": list(self.vae.shape),
                "stats": {k: list(v) for k, v in self.stats.items()}, "thresholds": self.thresholds,
                "threshold": self.threshold, "batched": self.batched, "forward_passes": self.forward_passes,
                "input_shape": list(self.input_shape or ()), "vae_history": self.vae_history,
                "fit_seconds": self.fit_seconds, "streamed": self.streamed}
        cache_mod.save(key, {k: v.detach().cpu().contiguous() for k, v in self.vae.state_dict().items()},
                       meta, kind="detector")
        return self

    def cache_key(self, model: nn.Module, x: Tensor, y: Tensor) -> str:
        """Digest of everything a fit depends on: weights, clean data, parameters, seed, device and
        code. The code part is :func:`beniful.sources.source_digest` of the detector's class, which
        follows its imports (the VAE, the feature hooks, the base class's calibration, the cache),
        so an edit of any of them refits instead of loading a fit made by the old code.

        Args:
            model: the suspect model the detector is fitted on.
            x: the clean images of the fit.
            y: their labels.

        Returns:
            The cache key (kind ``detector``).
        """
        h = hashlib.sha256()
        for name, t in model.state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        for t in (x, y):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        cfg = {"detector": self.name, "params": self.params(), "vae_lr": self.vae_lr,
               "vae_batch_size": self.vae_batch_size, "fpr": self.fpr, "calib_fraction": self.calib_fraction,
               "seed": self.seed,
               "device": "model" if self.device_name == "model" else str(resolve_device(self.device_name)), "torch": torch.__version__,
               "data": h.hexdigest(), "source": sources.source_digest(type(self))}
        return cache_mod.config_key(cfg)

    def _restore(self, model: nn.Module, tensors: dict[str, Tensor], meta: dict[str, Any]) -> bool:
        try:
            vae = FeatureVAE(tuple(meta["feature_shape"]), self.latent_dim)
            vae.load_state_dict(tensors)
        except (KeyError, RuntimeError, ValueError, TypeError):
            return False
        self._bind(model)
        self.vae = vae.to(self.device).eval().requires_grad_(False)
        self.stats = {k: (float(v[0]), float(v[1])) for k, v in meta["stats"].items()}
        self.thresholds = {k: float(v) for k, v in meta["thresholds"].items()}
        self.threshold = float(meta["threshold"])
        self.batched, self.forward_passes = bool(meta["batched"]), float(meta["forward_passes"])
        self.input_shape = tuple(meta["input_shape"]) or None
        self.vae_history = [float(v) for v in meta["vae_history"]]
        self.fit_seconds = float(meta["fit_seconds"])
        self.streamed = bool(meta.get("streamed", False))
        return True

    # ------------------------------------------------------------------ fit
    @torch.no_grad()
    def middle_features(self, x: Tensor) -> Tensor:
        """``h(x)`` of the frozen suspect model, batched, on the detector's device.

        Args:
            x: float images in [0, 1], ``N x C x H x W`` (on any device).

        Returns:
            The output of submodule ``layer``, ``N x C' x H' x W'``, on the detector's device.

        Raises:
            RuntimeError: the detector is not fitted.
        """
        self._require_fit()
        out = [features.extract(self.model, self.layer, x[s].to(self.device)) for s in batches(len(x), self.batch_size)]
        return torch.cat(out)

    def _shifts(self, x: Tensor) -> tuple[int, Tensor, Tensor]:
        """``(pad, dy, dx)`` of the ``augment`` shifted copies (``dy``, ``dx``: ``augment x N``),
        drawn from a generator seeded with the detector's seed: the one source of the copies, for
        the precomputed and the streamed fit alike."""
        g = torch.Generator().manual_seed(self.seed + 31)
        n, _, h, w = x.shape
        pad = max(1, round(min(h, w) / 14))
        dy, dx = [], []
        for _ in range(self.augment):
            dy.append(torch.randint(0, 2 * pad + 1, (n,), generator=g))
            dx.append(torch.randint(0, 2 * pad + 1, (n,), generator=g))
        empty = torch.empty(0, n, dtype=torch.long)
        return pad, torch.stack(dy) if dy else empty, torch.stack(dx) if dx else empty

    def _augmented(self, x: Tensor, idx: Tensor | None = None) -> Tensor:
        """``augment`` shifted copies of the clean images (random crop of a zero-padded image):
        more benign feature maps for the VAE from the same few clean images.

        Item ``k * N + j`` is copy ``k`` of image ``j`` (copy 0: the image itself). ``idx`` picks
        items (a streamed fit builds each batch's images when it needs them); ``None``: all of them,
        ``(augment + 1) * N`` images."""
        n, _, h, w = x.shape
        if idx is None:
            if self.augment == 0:
                return x
            idx = torch.arange((self.augment + 1) * n)
        pad, dy, dx = self._shifts(x)
        copy, j = idx // n, idx % n
        out = []
        for k, i in zip(copy.tolist(), j.tolist()):
            if k == 0:
                out.append(x[i])
            else:
                xp = F.pad(x[i], (pad,) * 4)
                a, b = int(dy[k - 1, i]), int(dx[k - 1, i])
                out.append(xp[:, a:a + h, b:b + w])
        return torch.stack(out) if out else x[:0]

    def fit_plan(self, x: Tensor) -> dict[str, Any]:
        """How the VAE fit on clean images ``x`` will hold its features, from the memory budget.

        The precomputed fit holds every feature on the device, about ``PRECOMPUTE_COPIES`` copies
        at its peak (the features, their standardised copy and one temporary); it is used when
        that fits :meth:`~beniful.detectors.base.Detector.budget`, else the fit streams.

        Args:
            x: the clean images the VAE is fitted on (before augmentation).

        Returns:
            ``{"items", "feature_shape", "feature_bytes", "precomputed_bytes", "budget", "streamed"}``:
            the number of (augmented) feature maps, one map's shape and bytes, the bytes the
            precomputed fit would hold, the budget, and whether the fit streams.
        """
        assert self.model is not None
        with torch.no_grad():
            shape = tuple(features.extract(self.model, self.layer, x[:1].to(self.device)).shape[1:])
        items = (self.augment + 1) * len(x)
        per = memory.tensor_bytes(shape)
        need, budget = items * per * PRECOMPUTE_COPIES, self.budget()
        return {"items": items, "feature_shape": shape, "feature_bytes": per, "precomputed_bytes": need,
                "budget": budget, "streamed": need > budget}

    def _fit(self, x: Tensor, y: Tensor) -> None:
        check_layer(self.model, self.layer)
        self.input_shape = tuple(x.shape[1:])
        plan = self.fit_plan(x)
        self.streamed = bool(plan["streamed"])
        feats: Tensor | _StreamedFeatures
        if self.streamed:
            feats = _StreamedFeatures(self, x, plan["items"])
        else:
            feats = self.middle_features(self._augmented(x))
        # the VAE's initial weights come from the detector's seed, not from whatever the global RNG
        # holds: two fits with the same seed and data give the same detector
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + 17)
            self.vae = FeatureVAE(plan["feature_shape"], self.latent_dim).to(self.device)
        del plan
        with torch.enable_grad():
            self.vae_history = train_vae(self.vae, feats, epochs=self.vae_epochs, lr=self.vae_lr,
                                         batch_size=self.vae_batch_size, beta=self.beta, seed=self.seed,
                                         device=self.device, progress=self.progress)
        del feats
        self.vae.requires_grad_(False)
        probe = x[: min(8, len(x))].to(self.device)
        self.batched = features.batched_tail_ok(self.model, self.layer, probe, self.vae.reconstruct)
        tail = features.tail_fraction(self.model, self.layer, probe)
        self.forward_passes = 1.0 + tail if self.batched else 2.0
        self.stats = {}

    # ------------------------------------------------------------------ signals
    @torch.no_grad()
    def signals(self, x: Any) -> dict[str, Tensor]:
        """Raw per-input signals (used by the eliminator and the figures).

        Args:
            x: inputs in any form :meth:`~beniful.detectors.base.Detector.score` accepts.

        Returns:
            CPU tensors ``[N]``: ``r``, ``c``, the predictions ``pred`` = argmax f(x) and
            ``pred_rec`` = argmax g(h_hat(x)).
        """
        self._require_fit()
        x = as_images(x)
        self._check_shape(x)
        out: dict[str, list[Tensor]] = {"r": [], "c": [], "pred": [], "pred_rec": []}
        for s in batches(len(x), self.score_batch_size(x)):
            r, c, p, pr = self._raw(x[s].to(self.device))
            for k, v in zip(("r", "c", "pred", "pred_rec"), (r, c, p, pr)):
                out[k].append(v.cpu())
        return {k: torch.cat(v) if v else torch.empty(0) for k, v in out.items()}

    def _check_shape(self, x: Tensor) -> None:
        """Inputs must look like the clean data the VAE was fitted on (else the model fails deep inside)."""
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"inputs have shape {tuple(x.shape[1:])} but the clean data had {self.input_shape}")

    def _raw(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        assert self.vae is not None
        logits, logits_rec, h, h_hat = features.forward_with_reconstruction(
            self.model, self.layer, x, self.vae.reconstruct, batched=self.batched)
        r = self.vae.distance(h, h_hat)
        lp, lq = F.log_softmax(logits.float(), 1), F.log_softmax(logits_rec.float(), 1)
        pred = lp.argmax(1)
        if self.consistency == "kl":
            c = (lp.exp() * (lp - lq)).sum(1).clamp_min(0)
        else:
            c = -lq.gather(1, pred[:, None]).squeeze(1)
        return r, c, pred, lq.argmax(1)

    def _standardise(self, name: str, v: Tensor) -> Tensor:
        med, scale = self.stats[name]
        return (torch.log(v + _EPS) - med) / scale

    def combine(self, r: Tensor, c: Tensor, signal: str | None = None) -> Tensor:
        """The score of raw signals (from :meth:`signals`), so a caller that already holds them, such
        as the eliminator mining its pool, does not run the model twice.

        Args:
            r: raw reconstruction distances.
            c: raw inference-consistency values.
            signal: ``"r"``, ``"c"`` or ``"both"``; default the detector's own ``signal``.

        Returns:
            The standardised score, comparable with ``threshold`` (or ``thresholds[signal]``).
        """
        signal = signal or self.signal
        if signal == "r":
            return self._standardise("r", r)
        if signal == "c":
            return self._standardise("c", c)
        return self.r_weight * self._standardise("r", r) + self.c_weight * self._standardise("c", c)

    def calibrate(self, x_clean: Tensor) -> float:
        """Standardisation statistics of both signals, then the threshold, on held-out clean inputs.

        Also records a threshold per signal (``thresholds``) so that one fitted detector serves the
        r / c / both ablation without refitting the VAE.

        Args:
            x_clean: held-out clean images in [0, 1], ``N x C x H x W``, not seen by the VAE.

        Returns:
            The threshold of the detector's own ``signal``.
        """
        sig = self.signals(x_clean)
        for k in ("r", "c"):
            lv = torch.log(sig[k].double() + _EPS)
            q1, med, q3 = (float(torch.quantile(lv, q)) for q in (0.25, 0.5, 0.75))
            self.stats[k] = (med, max(q3 - q1, 1e-3))
        self.thresholds = {k: threshold_at_fpr(self.combine(sig["r"], sig["c"], k), self.fpr) for k in SIGNALS}
        self.threshold = self.thresholds[self.signal]
        return self.threshold

    def scores_by_signal(self, x: Any) -> dict[str, Tensor]:
        """Scores of every signal choice from one pass over ``x`` (the r / c / both ablation).

        Args:
            x: inputs in any form :meth:`~beniful.detectors.base.Detector.score` accepts.

        Returns:
            ``{"both": scores, "r": scores, "c": scores}``, float tensors ``[N]``.
        """
        sig = self.signals(x)
        return {k: self.combine(sig["r"], sig["c"], k).float() for k in SIGNALS}

    def _score(self, x: Tensor) -> Tensor:
        if not self.stats:
            raise RuntimeError("BeniFul detector is not calibrated: call .fit(model, clean)")
        self._check_shape(x)
        r, c, _, _ = self._raw(x)
        return self.combine(r, c)


class _StreamedFeatures:
    """The clean features of a streamed fit, computed when asked: item ``i`` is the feature of
    :meth:`BeniFulDetector._augmented` item ``i``, built from the (CPU) images batch by batch, so
    neither all augmented images nor all features exist at once (a :class:`~beniful.vae.FeatureSource`)."""

    def __init__(self, det: BeniFulDetector, x: Tensor, items: int) -> None:
        self.det, self.x, self.items = det, x, items

    def __len__(self) -> int:
        return self.items

    @torch.no_grad()
    def __getitem__(self, idx: Tensor) -> Tensor:
        det = self.det
        assert det.model is not None
        return features.extract(det.model, det.layer, det._augmented(self.x, idx).to(det.device))
