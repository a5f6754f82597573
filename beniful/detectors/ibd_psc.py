"""IBD-PSC: parameter-oriented scaling consistency (Hou et al., ICML 2024, arXiv:2405.09786).

Idea: multiplying the affine parameters (gamma, beta) of the last BatchNorm layers by a factor
omega > 1 ruins the model on benign inputs, while the backdoor path keeps its confident target
prediction on triggered inputs.

Implemented method (the paper's PSC value and its adaptive BN-layer selection; the selection is
``prob_start`` in the authors' release in BackdoorBox):

1. Adaptive layer selection on clean data: with L affine BN layers (in registration order, which is
   forward order for sequential models), find the smallest k in 1..L-1 such that amplifying the
   last k BN layers makes the error rate on the clean data exceed ``xi``.
2. Build ``n`` parameter-amplified copies, copy i amplifying the last k+i BN layers
   (i = 0..n-1): "starting from the k-th layer, gradually amplify more BN layers". The copies are
   built once, in ``fit`` (deep copies; the suspect model is never modified).
3. PSC(x) = (1/n) sum_i softmax(f_i(x))[y_hat], with y_hat = argmax f(x) the original prediction.
   Higher PSC = more likely triggered. The score is -log(1 - PSC), an increasing function of PSC
   (same ranking, same AUROC) computed in the log domain, log(1 - p_i) = logsumexp over the other
   classes minus logsumexp over all: confident predictions would otherwise all round to PSC = 1.0
   and tie, which makes TPR at a fixed FPR meaningless.

Defaults and their sources (the paper's and its released code's): ``n = 5``, ``omega = 1.5``,
``xi = 0.6``. The paper's fixed threshold T = 0.9 is not used: the threshold is calibrated on
clean data at ``fpr`` like every detector here.

Deviations, each documented:

- The released code starts its copies one layer deeper (last k+1 .. k+n layers); we follow the
  algorithm as described (last k .. k+n-1).
- If no k reaches the error rate ``xi`` (or k+n-1 would exceed L), the start is moved so that the
  n copies still fit, i.e. k = max(1, L-n+1) at most; the released code fails there. With fewer
  than n BN layers, fewer copies are built and ``forward_passes`` says so.
- Error rate is measured against the clean labels, as in the released code.

Works on any ``nn.Module`` with affine BatchNorm layers (1d, 2d or 3d); a model without any raises
a ValueError. Cost: 1 + n forward passes per input (6 with the defaults).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils import check_positive_int
from .base import Detector
from .registry import DETECTORS

__all__ = ["IBDPSC", "bn_layers", "amplified_copy"]


def bn_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The affine BatchNorm layers of ``model`` in registration order.

    Non-affine BN layers have no gamma or beta to amplify, so they are left out.

    Args:
        model: any module; BatchNorm 1d, 2d and 3d count.

    Returns:
        ``(qualified name, layer)`` pairs, first registered first (forward order for a
        sequential model); empty when the model has none.
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.affine]


def amplified_copy(model: nn.Module, last: int, omega: float) -> nn.Module:
    """A deep copy of ``model`` with gamma and beta of its last ``last`` BN layers multiplied by omega.

    Args:
        model: the suspect model; never modified.
        last: how many of the last affine BN layers (:func:`bn_layers`) to amplify, 0 to L.
        omega: the factor on their weight and bias (IBD-PSC uses values > 1).

    Returns:
        The amplified copy, in eval mode.
    """
    m = copy.deepcopy(model)
    layers = bn_layers(m)
    with torch.no_grad():
        for _, bn in layers[len(layers) - last:]:
            bn.weight.mul_(omega)
            bn.bias.mul_(omega)
    return m.eval()


@DETECTORS.register("ibd_psc")
class IBDPSC(Detector):
    """Mean confidence of BN-amplified copies in the original prediction; score = -log(1 - PSC).

    Args:
        n: amplified copies of the model (each one more BN layer amplified).
        omega: the factor on the amplified BN layers' weight and bias (> 1).
        xi: the clean error rate that picks the first amplified layer, in (0, 1).
        **kwargs: the :class:`~beniful.detectors.base.Detector` parameters.
    """

    name = "ibd_psc"

    def __init__(self, n: int = 5, omega: float = 1.5, xi: float = 0.6, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.n = check_positive_int(n, "n")
        if not isinstance(omega, (int, float)) or not math.isfinite(omega) or omega <= 1.0:
            raise ValueError(f"omega (the BN amplification factor) must be a finite number > 1, got {omega!r}")
        if not isinstance(xi, (int, float)) or not 0.0 < xi < 1.0:
            raise ValueError(f"xi (the clean error rate that picks the first layer) must be in (0, 1), got {xi!r}")
        self.omega, self.xi = float(omega), float(xi)
        self.forward_passes = 1.0 + n
        self.start: int | None = None           # k: the copies amplify the last k .. k+n-1 BN layers
        self.error_rates: dict[int, float] = {}  # clean error rate per number of amplified layers
        self.variants: list[nn.Module] = []

    @torch.no_grad()
    def _error_rate(self, model: nn.Module, x: Tensor, y: Tensor) -> float:
        wrong = 0
        bs = self.score_batch_size(x)
        for s in range(0, len(x), bs):
            pred = model(x[s:s + bs].to(self.device)).argmax(1).cpu()
            wrong += int((pred != y[s:s + bs]).sum())
        return wrong / max(1, len(x))

    def _fit(self, x: Tensor, y: Tensor) -> None:
        assert self.model is not None
        n_bn = len(bn_layers(self.model))
        if n_bn == 0:
            raise ValueError(f"IBD-PSC amplifies BatchNorm parameters, but {type(self.model).__name__} "
                             "has no affine BatchNorm layer; use a detector that needs no BN "
                             "(strip, scale_up, teco)")
        if len(x) == 0:
            raise ValueError("IBD-PSC needs clean images to choose its layers; got an empty clean set")
        n_copies = min(self.n, n_bn)
        latest = n_bn - n_copies + 1          # the largest start for which all copies fit
        start = None
        self.error_rates = {}
        for k in range(1, n_bn):
            err = self._error_rate(amplified_copy(self.model, k, self.omega), x, y)
            self.error_rates[k] = err
            if err > self.xi:
                start = k
                break
        self.start = min(start if start is not None else latest, latest)
        self.variants = [amplified_copy(self.model, self.start + i, self.omega) for i in range(n_copies)]
        for v in self.variants:
            for p in v.parameters():
                p.requires_grad_(False)
        self.forward_passes = 1.0 + n_copies

    @torch.no_grad()
    def psc(self, x: Tensor) -> Tensor:
        """The plain PSC value in [0, 1] for a batch (for inspection; ``score`` ranks by it).

        Args:
            x: one batch of float images in [0, 1], ``N x C x H x W`` (a tensor; not batched further).

        Returns:
            CPU float tensor ``[N]``: the copies' mean softmax probability of the original prediction.

        Raises:
            RuntimeError: the detector is not fitted.
        """
        self._require_fit()
        assert self.model is not None
        x = x.to(self.device)
        pred = self.model(x).argmax(1, keepdim=True)
        probs = [v(x).float().softmax(1).gather(1, pred).squeeze(1) for v in self.variants]
        return torch.stack(probs, 1).mean(1).cpu()

    def _score(self, x: Tensor) -> Tensor:
        assert self.model is not None
        pred = self.model(x).argmax(1, keepdim=True)
        log_miss = []
        for v in self.variants:
            z = v(x).double()
            others = z.scatter(1, pred, float("-inf"))
            log_miss.append(torch.logsumexp(others, 1) - torch.logsumexp(z, 1))   # log(1 - p_i)
        lm = torch.stack(log_miss, 1).clamp_min(-1e4)                            # keep it finite
        return -(torch.logsumexp(lm, 1) - math.log(len(self.variants)))          # -log(1 - PSC)
