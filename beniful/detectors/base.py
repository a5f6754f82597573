"""The detector interface (after ART's small poison-detector API): ``fit``, ``score``, ``predict``.

``fit(model, clean)`` keeps a reference to the frozen suspect model, lets the subclass learn what
it needs from one part of the clean data (``_fit``), then calibrates the decision threshold on the
other part so that ``predict`` flags about ``fpr`` of clean inputs. ``score`` is continuous and
higher means "more likely triggered"; AUROC is always computed from it.

``fit`` takes labelled clean data and ``score`` / ``predict`` unlabelled inputs in the same forms (a
tensor or batch, a torch ``Dataset``, a ``DataLoader``; see :mod:`beniful.utils`), always images in
[0, 1]. ``params()`` is derived from the constructor signature (:class:`~beniful.registry.Configurable`).
"""
from __future__ import annotations

import time
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from tqdm import tqdm  # text bars: tqdm.auto warns "IProgress not found" in kernels without ipywidgets

from .. import memory
from ..datasets import stratified_split
from ..metrics import threshold_at_fpr
from ..registry import Configurable
from ..utils import as_images, as_tensors, batches, check_fraction, check_positive_int, model_device, resolve_device


class Detector(Configurable):
    """Base class: subclasses implement ``_score`` (and ``_fit`` when they learn from clean data).

    Args:
        fpr: share of clean inputs ``predict`` flags (the calibrated threshold's false-positive rate).
        calib_fraction: share of the clean data held out to calibrate the threshold.
        batch_size: inputs per scored batch.
        device: ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, or ``"model"`` (wherever the model is).
        seed: seed of the calibration split and of any randomness of the method.
        progress: show a progress bar while scoring.
        memory_budget: bytes one step may hold on the device (a number or a string such as
            ``"4GiB"``); ``None``: ``BENIFUL_MEMORY_BUDGET`` or the device's default (see
            :mod:`beniful.memory`). Scored batches shrink below ``batch_size`` only when a batch
            would not fit, so results do not change where everything fits.
    """

    name: ClassVar[str] = "detector"
    #: forward passes of the suspect model per scored input (for the cost table)
    forward_passes: ClassVar[float] = 1.0
    #: where it runs and whether it shows a bar change nothing; the seed is recorded beside params()
    params_exclude: ClassVar[frozenset[str]] = frozenset({"device", "progress", "seed", "memory_budget"})
    #: how many model inputs one scored input becomes in a pass (SCALE-UP's scales, TeCo's
    #: severities), the factor on one forward pass's memory per input when a scored batch is sized
    inputs_per_item: int = 1

    def __init__(self, fpr: float = 0.05, calib_fraction: float = 0.3, batch_size: int = 256,
                 device: str = "auto", seed: int = 0, progress: bool = False,
                 memory_budget: int | float | str | None = None) -> None:
        self.fpr = check_fraction(fpr, "fpr", high_open=True)
        self.calib_fraction = check_fraction(calib_fraction, "calib_fraction", high_open=True)
        check_positive_int(batch_size, "batch_size")
        self.batch_size, self.device_name, self.seed, self.progress = batch_size, device, seed, progress
        if memory_budget is not None:
            memory.parse_bytes(memory_budget)  # fail at construction, not deep inside a fit
        self.memory_budget = memory_budget
        self._forward_bytes: dict[tuple[int, ...], int] = {}
        self.model: nn.Module | None = None
        self.threshold: float | None = None
        self.fit_seconds = float("nan")

    # ------------------------------------------------------------------ fit / calibrate
    def fit(self, model: nn.Module, clean: Any) -> "Detector":
        """Learn from clean data and calibrate the threshold on a held-out part of it.

        The detector guards ``model`` as it is deployed: it moves the model to its device and freezes
        it *in place* (eval mode, ``requires_grad=False``) rather than copying it, so a large model is
        held once. Pass ``copy.deepcopy(model)`` to keep training the original afterwards.

        Args:
            model: the suspect classifier (expects images in [0, 1]; fold any input normalisation
                into it, see :class:`beniful.utils.Normalize`).
            clean: the defender's labelled clean data: an ``(x, y)`` tuple, a torch ``Dataset`` or a
                ``DataLoader``.

        Returns:
            ``self``, fitted and calibrated.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        t0 = time.time()
        x, y = as_tensors(clean)
        self._bind(model)
        if len(torch.unique(y)) > 1 and all(int((y == c).sum()) >= 2 for c in torch.unique(y)):
            cal_idx, fit_idx = stratified_split(y, self.calib_fraction, self.seed)
        else:
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(len(y), generator=g)
            k = max(1, int(round(self.calib_fraction * len(y))))
            cal_idx, fit_idx = perm[:k], perm[k:]
        self._fit(x[fit_idx], y[fit_idx])
        self.calibrate(x[cal_idx])
        self.fit_seconds = time.time() - t0
        return self

    def _bind(self, model: nn.Module) -> None:
        """Resolve the device and hold ``model`` frozen in eval mode on it (fit, or a cached fit)."""
        self.device = resolve_device(self.device_name) if self.device_name != "model" else model_device(model)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _fit(self, x: Tensor, y: Tensor) -> None:
        """Learn from clean data (override when needed)."""

    # ------------------------------------------------------------------ memory
    def budget(self) -> int:
        """Bytes one step may hold on the detector's device (:func:`beniful.memory.memory_budget`).

        Returns:
            The budget of the detector's ``memory_budget``, the environment or the device default.
        """
        return memory.memory_budget(getattr(self, "device", None), self.memory_budget)

    def forward_bytes(self, x: Tensor) -> int:
        """Estimated device bytes of one input of ``x``'s shape in a forward pass of the suspect model
        (:func:`beniful.memory.forward_item_bytes`, probed once per input shape).

        Args:
            x: inputs of the shape to be scored (only the first runs, once per shape).

        Returns:
            Bytes per input.
        """
        assert self.model is not None
        shape = tuple(x.shape[1:])
        if shape not in self._forward_bytes:
            try:
                with torch.no_grad():
                    self._forward_bytes[shape] = memory.forward_item_bytes(self.model, x[:1].to(self.device))
            except (RuntimeError, ValueError):
                return 1  # the model rejects the shape: leave it to the scoring to say so clearly
        return self._forward_bytes[shape]

    def score_batch_size(self, x: Tensor) -> int:
        """Inputs per scored batch: ``batch_size``, or fewer when that many would not fit the budget.

        Args:
            x: the inputs to be scored.

        Returns:
            The batch size :meth:`score` uses for ``x``.
        """
        if len(x) == 0:
            return self.batch_size
        return memory.items_that_fit(self.inputs_per_item * self.forward_bytes(x), self.budget(), self.batch_size)

    def calibrate(self, x_clean: Any) -> float:
        """Set the threshold so that about ``fpr`` of ``x_clean`` is flagged.

        Args:
            x_clean: clean inputs in any form :meth:`score` accepts.

        Returns:
            The threshold.
        """
        self.threshold = threshold_at_fpr(self.score(x_clean), self.fpr)
        return self.threshold

    # ------------------------------------------------------------------ score / predict
    def _require_fit(self) -> None:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call .fit(model, clean) first")

    @torch.no_grad()
    def score(self, x: Any) -> Tensor:
        """Continuous score per input; higher = more likely triggered.

        Args:
            x: images in [0, 1]: a tensor ``N x C x H x W``, a batch ``(x,)`` / ``(x, y)``, a torch
                ``Dataset`` or a ``DataLoader`` (labels are ignored).

        Returns:
            Float tensor ``[N]`` on the CPU.

        Raises:
            RuntimeError: the detector is not fitted.
            ValueError: inputs outside [0, 1] (or of the wrong shape).
        """
        self._require_fit()
        x = as_images(x)
        out = []
        for s in tqdm(list(batches(len(x), self.score_batch_size(x))), desc=self.name, disable=not self.progress, leave=False):
            out.append(self._score(x[s].to(self.device)).float().cpu())
        return torch.cat(out) if out else torch.empty(0)

    def _score(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, x: Any) -> Tensor:
        """Flag inputs at the calibrated threshold.

        Args:
            x: inputs in any form :meth:`score` accepts.

        Returns:
            Boolean tensor ``[N]``: ``True`` = flagged as triggered.
        """
        self._require_fit()
        if self.threshold is None:
            raise RuntimeError("threshold not calibrated")
        return self.score(x) > self.threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"
