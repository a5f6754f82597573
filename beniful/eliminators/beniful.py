"""BeniFul backdoor elimination (BeniFul-BE; Li et al., 2024, arXiv 2410.14723, Part 2).

Fine-tune the suspect model with ``L = CE(f_theta(x), y) on clean data + lam * D`` where ``D`` is a
feature-distance loss on the middle layer ``layer``. The paper fixes only this shape; the distance
is our reconstruction (METHOD.md section 2), chosen with ``form``:

- ``"a"`` *benign manifold*: for suspicious inputs ``x_s``, pull the repaired model's feature
  ``h_theta(x_s)`` towards ``h_hat(x_s) = VAE(h_0(x_s))``, the VAE reconstruction of the original
  model's feature, i.e. towards the benign feature the detector's VAE would rebuild;
- ``"b"`` *push away*: for suspicious inputs, hinge ``relu(margin - mse(h_theta(x_s), h_0(x_s)))``
  pushes the feature at least ``margin`` (standardised units) away from the backdoored one;
- ``"c"`` *clean anchoring* (NAD-like, for comparison): ``mse(h_theta(x), h_0(x))`` on the clean
  batch only; needs no pool.

Distances are mean squared errors in the VAE's channel-standardised feature units, so ``lam`` means
the same on every layer. Suspicious inputs are the inputs of the unlabelled ``pool`` (incoming data)
that the BeniFul detector, fitted on the same clean data, flags: the paper's *Backdoor
Consistency* (a trigger detected on an input proves a backdoor in the model, and those inputs show
where it lives). ``h_0`` is a frozen copy of the model as given.

Defaults: ``form="a"`` and ``lam`` were picked on a validation split (half of the incoming-pool
half of the test set, never the evaluation half; see :func:`beniful.ablations.elimination_validation_row`).
Optimiser as the FT baseline (SGD momentum 0.9, weight decay 5e-4, cosine, random crop).
"""
from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import features
from ..detectors.beniful import BeniFulDetector
from ..training import augment
from ..utils import check_layer
from .base import Eliminator
from .registry import ELIMINATORS

FORMS = ("a", "b", "c", "a+c", "b+c")
#: which weights are fine-tuned: every weight, or only the part up to ``layer`` (``h``; ``g`` frozen)
SCOPES = ("all", "front")


@ELIMINATORS.register("beniful")
class BeniFulEliminator(Eliminator):
    """CE on clean data + ``lam`` x a middle-feature distance on detected suspicious inputs."""

    name = "beniful"

    def __init__(self, layer: str = "layer3", form: str = "a", lam: float = 1.0, epochs: int = 20,
                 lr: float = 0.01, batch_size: int = 64, margin: float = 1.0, momentum: float = 0.9,
                 weight_decay: float = 5e-4, crop_padding: int = 2, hflip: bool = False, relabel: float = 0.0,
                 tube: float = 0.0, target_filter: bool = True, scope: str = "all",
                 kd: float = 0.0,
                 detector: BeniFulDetector | None = None, detector_kwargs: dict[str, Any] | None = None,
                 device: str = "auto", seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed, progress=progress)
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer must be a submodule name such as 'layer3', got {layer!r}")
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}; valid forms: {', '.join(FORMS)} "
                             f"(a: towards the VAE reconstruction, b: away from the backdoored feature, "
                             f"c: clean anchoring)")
        if isinstance(tube, bool) or not isinstance(tube, (int, float)) or not 0 <= tube < 1:
            raise ValueError(f"tube must be a quantile in [0, 1) (0 = plain distance to the reconstruction), got {tube!r}")
        for nm, v in (("lam", lam), ("margin", margin), ("weight_decay", weight_decay), ("relabel", relabel), ("kd", kd)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise ValueError(f"{nm} must be a non-negative number, got {v!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        self.layer, self.form, self.lam, self.margin = layer, form, float(lam), float(margin)
        self.momentum, self.weight_decay = float(momentum), float(weight_decay)
        self.crop_padding, self.hflip, self.relabel = crop_padding, bool(hflip), float(relabel)
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}; valid scopes: {', '.join(SCOPES)}")
        self.tube, self.target_filter, self.scope = float(tube), bool(target_filter), scope
        self.inferred_target: int | None = None
        self.kd = float(kd)
        self.tau: Tensor | None = None
        self.detector_kwargs = dict(detector_kwargs or {})
        self.detector = detector
        self.n_suspicious = 0
        self.suspicious_mask: Tensor | None = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "layer": self.layer, "form": self.form, "lam": self.lam,
                "margin": self.margin, "relabel": self.relabel, "tube": self.tube,
                "target_filter": self.target_filter, "scope": self.scope, "kd": self.kd}

    # ------------------------------------------------------------------ detection (Backdoor Consistency)
    def _detector(self, original: nn.Module, x: Tensor, y: Tensor) -> BeniFulDetector:
        """The BeniFul detector fitted on the original model (a given one is reused if its layer matches)."""
        det = self.detector
        if det is not None and det.model is not None and det.layer == self.layer:
            return det
        kw = {"layer": self.layer, "seed": self.seed, "device": str(self.device), **self.detector_kwargs}
        det = BeniFulDetector(**kw)
        det.fit(original, (x, y))
        self.detector = det
        return det

    # ------------------------------------------------------------------ repair
    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        check_layer(model, self.layer)
        original = copy.deepcopy(model).eval()
        det = self._detector(original, x, y)
        frozen = det.model if det.model is not None else original
        vae = det.vae
        assert vae is not None
        for p in model.parameters():
            p.requires_grad_(self.scope == "all")
        if self.scope == "front":
            for p in features.front_parameters(model, self.layer, x[:1].to(self.device)):
                p.requires_grad_(True)

        x_s = torch.empty(0, *x.shape[1:])
        if "a" in self.form or "b" in self.form or self.relabel > 0:
            if pool is None or len(pool) == 0:
                warnings.warn("BeniFul elimination: no pool of incoming inputs, so no suspicious inputs; "
                              "running clean fine-tuning only", stacklevel=3)
            else:
                self.suspicious_mask = self._suspicious(det, pool)
                x_s = pool[self.suspicious_mask]
        self.n_suspicious = len(x_s)
        # labels the benign reconstruction predicts for the suspicious inputs: g(h_hat(x_s))
        y_s = det.signals(x_s)["pred_rec"] if len(x_s) else torch.empty(0, dtype=torch.long)
        uses_pool = self.lam > 0 and ("a" in self.form or "b" in self.form) or self.relabel > 0

        self.tau = self._tube_width(frozen, vae, x) if "a" in self.form and self.tube > 0 else None

        n = len(x)
        if self.epochs == 0 or n < 2:
            return model
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        steps_per_epoch = math.ceil(n / self.batch_size)
        total = max(1, self.epochs * steps_per_epoch)
        g = self.generator
        step = 0
        model.train()
        for _ in tqdm(range(self.epochs), desc="beniful", disable=not self.progress, leave=False):
            perm = torch.randperm(n, generator=g)
            for start in range(0, n, self.batch_size):
                idx = perm[start:start + self.batch_size]
                if len(idx) < 2:
                    continue
                for group in opt.param_groups:
                    group["lr"] = self.lr * 0.5 * (1 + math.cos(math.pi * step / total))
                xb = augment(x[idx], self.crop_padding, self.hflip, g).to(self.device)
                yb = y[idx].to(self.device)
                nb = len(xb)
                if len(x_s) and uses_pool:
                    sidx = torch.randint(len(x_s), (min(self.batch_size, len(x_s)),), generator=g)
                    xs = augment(x_s[sidx], self.crop_padding, self.hflip, g).to(self.device)
                    inputs = torch.cat([xb, xs])
                else:
                    xs, inputs = None, xb
                with features.capture(model, self.layer) as store:
                    logits = model(inputs)
                h = store[0]
                loss = F.cross_entropy(logits[:nb], yb)
                if self.kd > 0:  # keep the original's clean-input predictions (soft targets)
                    with torch.no_grad():
                        p0 = F.log_softmax(frozen(xb).float(), 1)
                    loss = loss + self.kd * F.kl_div(F.log_softmax(logits[:nb].float(), 1), p0, log_target=True,
                                                     reduction="batchmean")
                if xs is not None and self.relabel > 0:
                    loss = loss + self.relabel * F.cross_entropy(logits[nb:], y_s[sidx].to(self.device))
                if self.lam > 0:
                    dist = self._distance(frozen, vae, h, xb, xs, nb)
                    if dist is not None:
                        loss = loss + self.lam * dist
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()
        return model

    @torch.no_grad()
    def _suspicious(self, det: BeniFulDetector, pool: Tensor) -> Tensor:
        """Pool inputs the detector flags; with ``target_filter`` only those the model sends to the
        class most flagged inputs go to. Backdoor Consistency for an all-to-one backdoor: triggered
        inputs collapse onto the target class, the detector's false positives spread over all classes,
        so the mode of the flagged predictions names the target and the filter drops most false
        positives (whose reconstruction labels would be wrong)."""
        sig = det.signals(pool)
        flags = det._combine(sig["r"], sig["c"]) > det.threshold
        self.inferred_target = None
        if self.target_filter and flags.any():
            counts = torch.bincount(sig["pred"][flags])
            self.inferred_target = int(counts.argmax())
            flags &= sig["pred"] == self.inferred_target
        return flags

    @torch.no_grad()
    def _tube_width(self, frozen: nn.Module, vae: Any, x: Tensor) -> Tensor:
        """Per-channel ``tube`` quantile of |standardised h - h_hat| over the clean data: how far a
        benign feature may lie from its reconstruction. Broadcastable to a feature batch."""
        h = torch.cat([features.extract(frozen, self.layer, x[i:i + 256].to(self.device))
                       for i in range(0, len(x), 256)])
        e = (vae.normalize(h) - vae.normalize(vae.reconstruct(h))).abs()
        e = e.transpose(0, 1).flatten(1)  # channel x (samples * positions)
        tau = torch.quantile(e, self.tube, dim=1)
        return tau.view(1, -1, *([1] * (h.ndim - 2)))

    def _distance(self, frozen: nn.Module, vae: Any, h: Tensor, xb: Tensor, xs: Tensor | None, nb: int
                  ) -> Tensor | None:
        """The feature-distance term: the sum of the terms named in ``form`` (None if none applies)."""
        terms = []
        if "c" in self.form:
            with torch.no_grad():
                target = features.extract(frozen, self.layer, xb)
            terms.append(((vae.normalize(h[:nb]) - vae.normalize(target)) ** 2).mean())
        if xs is not None and ("a" in self.form or "b" in self.form):
            with torch.no_grad():
                h0 = features.extract(frozen, self.layer, xs)
                target = vae.reconstruct(h0) if "a" in self.form else h0
            diff = vae.normalize(h[nb:]) - vae.normalize(target)
            if "a" in self.form:
                if self.tau is not None:  # only the part of the deviation beyond the clean tube counts
                    diff = F.relu(diff.abs() - self.tau)
                terms.append((diff ** 2).mean())
            else:
                terms.append(F.relu(self.margin - (diff ** 2).flatten(1).mean(1)).mean())
        return sum(terms) if terms else None
