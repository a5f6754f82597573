"""BeniFul backdoor elimination (BeniFul-BE; Li et al., 2024, arXiv 2410.14723, Part 2).

Fine-tune the suspect model with ``L = CE(f_theta(x), y)`` on the defender's clean data plus
``lam`` times a feature-distance loss on the middle layer ``layer``. The paper fixes only this
shape; the distance is our reconstruction (the book's method page). ``form`` joins one or more terms
with ``+`` (e.g. ``"a+t"``):

- ``a`` *benign manifold*: for suspicious inputs ``x_s``, pull the repaired feature
  ``h_theta(x_s)`` towards ``h_hat(x_s) = VAE(h_0(x_s))``, the detector VAE's reconstruction of
  the original model's feature;
- ``b`` *push away*: for suspicious inputs, the hinge ``relu(margin - mse(h_theta(x_s), h_0(x_s)))``
  moves the feature at least ``margin`` (standardised units) away from the backdoored one;
- ``c`` *clean anchoring* (NAD-like, for comparison): ``mse(h_theta(x), h_0(x))`` on clean inputs;
- ``t`` *transplanted trigger*: per-pixel moments of the suspicious inputs and of the clean data
  estimate the trigger as a map ``T(x) = scale * x + shift`` (:func:`estimate_trigger`; for an
  all-to-one backdoor the digits average out and the trigger stays); applied to clean images it
  gives triggered inputs whose benign counterpart is known, so ``mse(h_theta(T(x)), h_0(x))`` pulls
  each one onto its own clean feature, and the task loss ``transplant_ce * CE(f_theta(T(x)), y)``
  uses the clean label. This is what lets 25 detected
  inputs teach trigger invariance for *every* input (see the book's elimination page).

``relabel`` adds ``CE(f_theta(x_s), y_s)``: the suspicious inputs learn the class the original model
gives them once the trigger is taken away. ``relabel_source`` says where ``y_s`` comes from: ``rec``,
the prediction ``g_0(h_hat(x_s))`` from the VAE reconstruction (the detector's inference-consistency
signal turned into a label); ``inv``, the prediction ``f_0((x_s - shift) / scale)`` on the input with
the estimated trigger map inverted; ``rec+inv`` (default), the sum of both log-probabilities. With
``exclude_target`` (default) the inferred target class (``target_filter`` infers it) is never a
label: in an all-to-one backdoor a triggered input belongs to another class, and a reconstruction
that keeps part of the trigger's feature would otherwise teach the backdoor again.

``keep`` adds ``keep * CE(f_theta(x_p), argmax f_0(x_p))`` on pool inputs the detector does *not*
flag: the unlabelled incoming data the detector calls benign, labelled by the original model,
enlarges the tiny clean set so that the repair keeps clean accuracy (self-distillation on data the
defender already holds; no labels needed).

Distances are mean squared errors in the VAE's channel-standardised feature units, so ``lam`` means
the same on every layer. Suspicious inputs are the inputs of the unlabelled ``pool`` that the BeniFul
detector, fitted on the same clean data, flags: the paper's *Backdoor Consistency*. With
``target_filter`` only flagged inputs that the model sends to the class most flagged inputs go to are
kept (triggered inputs collapse onto the target; false positives spread over all classes).
``h_0`` is a frozen copy of the model as given. ``trigger_min_std`` (default 0.05) is the ``affine``
transplant's guard: pixels whose standard deviation over the clean set is below it keep a scale of 1
(:func:`estimate_trigger`).

Defaults were chosen on a validation split (half of the incoming-pool half of the test set, never
the evaluation half; :func:`beniful.evaluation.elimination_row` with ``split="validation"``), quick profile, mnist5k,
cpu, seeds 0-2 (with ``momentum=0`` and ``crop_padding=2``, no flip): ``epochs=40, keep=1, relabel=3`` kept every attack within ASR <= 0.05 and an ACC
drop <= 0.02 on seed 0; ``transplant="affine"`` rebuilds a blend where ``additive`` leaves it at full
contrast; ``relabel_source="rec+inv"`` with ``exclude_target`` stops the relabel term from teaching
the backdoor back (validation ASR at most 0.009 on all fifteen attack x seed cells, against up to
0.356 before). The measurements and the reasoning are on the book's page on how the elimination
defaults were chosen (``book/elimination_defaults.ipynb``).

The optimiser and augmentation defaults (plain SGD without momentum, random crop with 2 pixels of
padding, no flip) were chosen on validation splits of both kinds of image we have: mnist5k's digits
(above) and Fashion-MNIST's product photos, where flips are valid. On a stratified 4,000/1,000-image
Fashion-MNIST subset (quick profile, seed 0, cpu) the mean of ASR + ACC drop over the five attacks was
lowest with these values (0.073, against 0.104 for the fine-tuning baselines' natural-image setting
of momentum 0.9, padding 4 and flips, and 0.090 / 0.111 for the two mixtures). That setting cost
0.06-0.09 of validation ACC where these cost 0.02-0.06, with ASR within one image of it on four
attacks and higher on WaNet (0.12 against 0.07; no setting reached 0.05 there). The table is on the
book's page on the elimination defaults (``results/quick/fashion-mnist/elimination_defaults_natural.csv``). Not yet validated on CIFAR-10 or Tiny ImageNet (no copy on our machines).
"""
from __future__ import annotations

import copy
import warnings
from types import MappingProxyType
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import features, memory
from ..detectors.beniful import BeniFulDetector
from ..training import augment
from ..utils import batches, check_layer
from .base import Eliminator
from .ft import cosine_sgd
from .registry import ELIMINATORS

TERMS = ("a", "b", "c", "t")
#: how the ``t`` term builds triggered copies of clean images from the suspicious set (see
#: :func:`estimate_trigger`)
TRANSPLANTS = ("additive", "affine")
#: where the ``relabel`` term's labels for suspicious inputs come from (see ``BeniFulEliminator._labels``)
RELABEL_SOURCES = ("rec", "inv", "rec+inv")
#: forms listed in ablations (any ``+``-join of TERMS is accepted)
FORMS = ("a", "b", "c", "t", "a+t")


def parse_form(form: str) -> frozenset[str]:
    """``"a+t"`` -> {"a", "t"}; a ValueError names the valid terms.

    Args:
        form: one or more of the terms ``a``, ``b``, ``c``, ``t`` joined by ``+``, each at most once.

    Returns:
        The set of terms.

    Raises:
        ValueError: ``form`` is not a string, is empty, or names an unknown or repeated term.
    """
    parts = form.split("+") if isinstance(form, str) else []
    if not parts or any(p not in TERMS for p in parts) or len(set(parts)) != len(parts):
        raise ValueError(f"unknown form {form!r}; use one or more of {', '.join(TERMS)} joined by '+' "
                         f"(a: towards the VAE reconstruction, b: away from the backdoored feature, "
                         f"c: clean anchoring, t: transplanted trigger), e.g. 'a+t'")
    return frozenset(parts)


def estimate_trigger(x_s: Tensor, x_clean: Tensor, kind: str = "additive", min_std: float = 0.05) -> Tensor:
    """Per-pixel map ``x -> scale * x + shift`` (stacked as a [2, C, H, W] tensor) that turns clean
    images into images carrying the trigger, estimated from unpaired suspicious and clean images.

    - ``additive``: ``scale = 1``, ``shift = mean(x_s) - mean(x)``; exact for additive triggers
      (SIG) and, for an all-to-one backdoor, a patch's mean shows up while the digits average out.
    - ``affine``: first and second moments per pixel. A trigger of the form
      ``x_s = (1 - m) * x + m * T`` (a patch: ``m = 1`` on it; Blended: ``m = alpha`` everywhere;
      additive: ``m = 0``) has ``std(x_s) = (1 - m) std(x)`` and ``mean(x_s) = (1 - m) mean(x) + m T``,
      so ``scale = clamp(std(x_s) / std(x), 0, 1)`` and ``shift = mean(x_s) - scale * mean(x)``.
      Pixels that barely vary on clean data (``std < min_std``: a digit's empty border) keep
      ``scale = 1``, where the ratio of two tiny deviations would be noise. On natural images almost
      no pixel is that constant over the clean set (a CIFAR-10 pixel's standard deviation over the
      training set is about 0.25), so the guard then changes nothing.

    Args:
        x_s: the suspicious inputs, float images in [0, 1], ``N_s x C x H x W`` (N_s >= 1).
        x_clean: the defender's clean images, ``N x C x H x W`` (N >= 2), same device.
        kind: ``"additive"`` or ``"affine"`` (see ``TRANSPLANTS``).
        min_std: ``affine`` only: pixels whose clean standard deviation is below it keep ``scale = 1``.

    Returns:
        ``[2, C, H, W]``: ``scale`` at index 0 and ``shift`` at index 1.

    Raises:
        ValueError: an unknown ``kind``.
    """
    mean_s, mean_c = x_s.mean(0), x_clean.mean(0)
    if kind == "additive":
        return torch.stack([torch.ones_like(mean_c), mean_s - mean_c])
    if kind == "affine":
        std_s, std_c = x_s.std(0, unbiased=len(x_s) > 1), x_clean.std(0)
        scale = torch.where(std_c > min_std, (std_s / std_c.clamp_min(1e-6)).clamp(0, 1), torch.ones_like(std_c))
        return torch.stack([scale, mean_s - scale * mean_c])
    raise ValueError(f"unknown transplant {kind!r}; valid: {', '.join(TRANSPLANTS)}")


def _nonneg(v: float, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {v!r}")
    return float(v)


@ELIMINATORS.register("beniful")
class BeniFulEliminator(Eliminator):
    """CE on clean data + ``lam`` x middle-feature distances driven by detected suspicious inputs."""

    name = "beniful"
    #: a fitted detector is an object to reuse, not a setting (its parameters are in detector_kwargs)
    params_exclude = Eliminator.params_exclude | {"detector"}
    #: it mines the unlabelled incoming pool (suspicious inputs, and the ``keep`` term's benign ones)
    uses_pool = True

    def __init__(self, layer: str = "layer3", form: str = "a+t", lam: float = 1.0, epochs: int = 40,
                 lr: float = 0.01, batch_size: int = 64, momentum: float = 0.0, weight_decay: float = 5e-4,
                 relabel: float = 3.0, transplant_ce: float = 1.0, margin: float = 1.0,
                 keep: float = 1.0, target_filter: bool = True, transplant: str = "affine",
                 relabel_source: str = "rec+inv", exclude_target: bool = True,
                 crop_padding: int = 2, hflip: bool = False, trigger_min_std: float = 0.05,
                 detector: BeniFulDetector | None = None,
                 detector_kwargs: Mapping[str, Any] | None = MappingProxyType({}),
                 device: str = "auto", seed: int = 0, progress: bool = False) -> None:
        super().__init__(epochs=epochs, lr=lr, batch_size=batch_size, device=device, seed=seed, progress=progress)
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer must be a submodule name such as 'layer3', got {layer!r}")
        self.terms = parse_form(form)
        self.layer, self.form = layer, form
        self.lam, self.margin = _nonneg(lam, "lam"), _nonneg(margin, "margin")
        self.weight_decay = _nonneg(weight_decay, "weight_decay")
        self.relabel, self.transplant_ce = _nonneg(relabel, "relabel"), _nonneg(transplant_ce, "transplant_ce")
        self.keep = _nonneg(keep, "keep")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding must be a non-negative integer, got {crop_padding!r}")
        self.momentum, self.crop_padding, self.hflip = float(momentum), crop_padding, bool(hflip)
        self.trigger_min_std = _nonneg(trigger_min_std, "trigger_min_std")
        self.target_filter = bool(target_filter)
        if transplant not in TRANSPLANTS:
            raise ValueError(f"unknown transplant {transplant!r}; valid: {', '.join(TRANSPLANTS)}")
        self.transplant = transplant
        if relabel_source not in RELABEL_SOURCES:
            raise ValueError(f"unknown relabel_source {relabel_source!r}; valid: {', '.join(RELABEL_SOURCES)}")
        self.relabel_source, self.exclude_target = relabel_source, bool(exclude_target)
        self.detector_kwargs = dict(detector_kwargs or {})
        #: the detector given at build time, the only one ever reused; never replaced by a repair,
        #: so one instance can repair several models (and ``repaired_model`` can still cache it)
        self.detector = detector
        #: the detector the last repair used (the build-time one or a fresh fit), for reports
        self.last_detector: BeniFulDetector | None = None
        # filled by repair(), for reports and figures
        self.n_suspicious = 0
        self.suspicious_mask: Tensor | None = None
        self.inferred_target: int | None = None
        self.trigger_estimate: Tensor | None = None

    # ------------------------------------------------------------------ Backdoor Consistency
    def _detector(self, original: nn.Module, x: Tensor, y: Tensor) -> BeniFulDetector:
        """The BeniFul detector fitted on the original model. A fitted one given at build time is
        reused when its layer matches (ablation sweeps share one VAE fit); it must have been fitted
        on the same model and clean data, which is the caller's responsibility. Otherwise a detector
        is fitted anew for this repair and kept in ``last_detector`` only: stored in ``detector`` it
        would be reused on the next model, whose repair would then take the first model's features
        as the benign reference."""
        det = self.detector
        if det is None or det.model is None or det.layer != self.layer:
            kw = {"layer": self.layer, "seed": self.seed, "device": str(self.device), **self.detector_kwargs}
            det = BeniFulDetector(**kw).fit(original, (x, y))
        self.last_detector = det
        return det

    @torch.no_grad()
    def _suspicious(self, det: BeniFulDetector, pool: Tensor) -> Tensor:
        """Mask of the suspicious pool inputs. Also keeps the unflagged inputs and the original
        model's labels for them (``keep``) and sets ``inferred_target``."""
        sig = det.signals(pool)
        flags = det.combine(sig["r"], sig["c"]) > det.threshold
        self._benign_pool = (pool[~flags], sig["pred"][~flags])
        self.inferred_target = None
        if self.target_filter and flags.any():
            self.inferred_target = int(torch.bincount(sig["pred"][flags]).argmax())
            flags &= sig["pred"] == self.inferred_target
        return flags

    @torch.no_grad()
    def _labels(self, det: BeniFulDetector, x_s: Tensor, estimate: Tensor) -> Tensor:
        """Labels for the ``relabel`` term: the class the original model gives the suspicious input
        once the trigger is taken away, read from the VAE reconstruction of its feature (``rec``:
        ``g_0(h_hat(x_s))``), from the input with the estimated trigger map inverted (``inv``:
        ``f_0((x_s - shift) / scale)``), or from both (``rec+inv``: summed log-probabilities). With
        ``exclude_target`` the inferred target class is never a label: in an all-to-one backdoor a
        triggered input's true class is another one, and a reconstruction that keeps part of the
        trigger's feature would otherwise teach the backdoor again."""
        assert det.model is not None and det.vae is not None
        scale, shift = estimate.to(self.device)
        parts = []
        # 256 per batch, fewer when the detector's memory budget holds fewer (:mod:`beniful.memory`)
        bs = memory.items_that_fit(det.inputs_per_item * det.forward_bytes(x_s), det.budget(), 256)
        for sl in batches(len(x_s), bs):
            xb = x_s[sl].to(self.device)
            terms = []
            if "rec" in self.relabel_source:
                _, logits_rec, _, _ = features.forward_with_reconstruction(
                    det.model, det.layer, xb, det.vae.reconstruct, batched=det.batched)
                terms.append(F.log_softmax(logits_rec.float(), 1))
            if "inv" in self.relabel_source:
                terms.append(F.log_softmax(det.model(((xb - shift) / scale.clamp_min(0.2)).clamp(0, 1)).float(), 1))
            parts.append(sum(terms[1:], terms[0]).cpu())
        logp = torch.cat(parts)
        if self.exclude_target and self.inferred_target is not None and logp.shape[1] > 1:
            logp[:, self.inferred_target] = -float("inf")
        return logp.argmax(1)

    # ------------------------------------------------------------------ repair
    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        check_layer(model, self.layer)
        self.n_suspicious, self.suspicious_mask, self.inferred_target, self.trigger_estimate = 0, None, None, None
        self._benign_pool: tuple[Tensor, Tensor] | None = None
        original = copy.deepcopy(model).eval()
        det = self._detector(original, x, y)
        frozen = det.model if det.model is not None else original
        vae = det.vae
        assert vae is not None
        for p in model.parameters():
            p.requires_grad_(True)

        x_s = torch.empty(0, *x.shape[1:])
        y_s = torch.empty(0, dtype=torch.long)
        needs_pool = bool(self.terms & {"a", "b", "t"}) or self.relabel > 0 or self.keep > 0
        if needs_pool:
            if pool is None or len(pool) == 0:
                warnings.warn("BeniFul elimination: no pool of incoming inputs, hence no suspicious inputs; "
                              "only the clean terms are used", stacklevel=3)
            else:
                self.suspicious_mask = self._suspicious(det, pool)
                x_s = pool[self.suspicious_mask]
        self.n_suspicious = len(x_s)
        use_s = len(x_s) > 0 and (bool(self.terms & {"a", "b"}) and self.lam > 0 or self.relabel > 0)
        use_t = len(x_s) > 0 and "t" in self.terms
        use_k = self.keep > 0 and self._benign_pool is not None and len(self._benign_pool[0]) > 0
        estimate = estimate_trigger(x_s, x, self.transplant, self.trigger_min_std) if len(x_s) else None
        self.trigger_estimate = estimate if use_t else None
        if len(x_s):
            y_s = self._labels(det, x_s, estimate)

        def batch_loss(idx: Tensor) -> Tensor:
            return self._step_loss(model, frozen, vae, x[idx], y[idx], x_s, y_s, use_s, use_t, use_k, self.generator)

        return cosine_sgd(model, len(x), batch_loss, epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                          generator=self.generator, momentum=self.momentum, weight_decay=self.weight_decay,
                          progress=self.progress, desc="beniful")

    def _step_loss(self, model: nn.Module, frozen: nn.Module, vae: Any, xb: Tensor, yb: Tensor, x_s: Tensor,
                   y_s: Tensor, use_s: bool, use_t: bool, use_k: bool, g: torch.Generator) -> Tensor:
        """One batch: clean images, then suspicious inputs, then transplanted ones, then unflagged pool
        inputs, in one forward pass (the middle feature is read by a hook)."""
        xb = augment(xb, self.crop_padding, self.hflip, g).to(self.device)
        yb = yb.to(self.device)
        parts, nb = [xb], len(xb)
        if use_s:
            sidx = torch.randint(len(x_s), (min(self.batch_size, len(x_s)),), generator=g)
            xs = augment(x_s[sidx], self.crop_padding, self.hflip, g).to(self.device)
            ys = y_s[sidx].to(self.device)
            parts.append(xs)
        if use_t:
            assert self.trigger_estimate is not None
            scale, shift = self.trigger_estimate.to(self.device)
            parts.append((scale * xb + shift).clamp(0, 1))
        if use_k:
            assert self._benign_pool is not None
            xk_all, yk_all = self._benign_pool
            kidx = torch.randint(len(xk_all), (self.batch_size,), generator=g)
            parts.append(augment(xk_all[kidx], self.crop_padding, self.hflip, g).to(self.device))
            yk = yk_all[kidx].to(self.device)
        with features.capture(model, self.layer) as store:
            logits = model(torch.cat(parts))
        u = vae.normalize(store[0])
        loss = F.cross_entropy(logits[:nb], yb)
        if "c" in self.terms or use_t:
            with torch.no_grad():
                u0_clean = vae.normalize(features.extract(frozen, self.layer, xb))
        if "c" in self.terms and self.lam > 0:
            loss = loss + self.lam * ((u[:nb] - u0_clean) ** 2).mean()
        pos = nb
        if use_s:
            ns = len(xs)
            u_s, logit_s = u[pos:pos + ns], logits[pos:pos + ns]
            pos += ns
            if self.relabel > 0:
                loss = loss + self.relabel * F.cross_entropy(logit_s, ys)
            if self.terms & {"a", "b"} and self.lam > 0:
                with torch.no_grad():
                    h0 = features.extract(frozen, self.layer, xs)
                if "a" in self.terms:
                    loss = loss + self.lam * ((u_s - vae.normalize(vae.reconstruct(h0))) ** 2).mean()
                if "b" in self.terms:
                    d = ((u_s - vae.normalize(h0)) ** 2).flatten(1).mean(1)
                    loss = loss + self.lam * F.relu(self.margin - d).mean()
        if use_t:
            u_t, logit_t = u[pos:pos + nb], logits[pos:pos + nb]
            loss = loss + self.lam * ((u_t - u0_clean) ** 2).mean()
            if self.transplant_ce > 0:
                loss = loss + self.transplant_ce * F.cross_entropy(logit_t, yb)
            pos += nb
        if use_k:
            loss = loss + self.keep * F.cross_entropy(logits[pos:pos + len(yk)], yk)
        return loss
