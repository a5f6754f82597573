"""Detection metrics from continuous scores (never from binary decisions), per the book's protocol page."""
from __future__ import annotations

import numpy as np
from torch import Tensor

__all__ = ["auroc", "tpr_at_fpr", "roc_curve", "detection_metrics", "threshold_at_fpr"]


def _np(a: Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().double().numpy() if isinstance(a, Tensor) else np.asarray(a, dtype=float)


def _check(clean: np.ndarray, triggered: np.ndarray) -> None:
    if len(clean) == 0 or len(triggered) == 0:
        raise ValueError(f"need scores for both populations, got {len(clean)} clean and {len(triggered)} triggered")
    if not (np.isfinite(clean).all() and np.isfinite(triggered).all()):
        raise ValueError("scores contain NaN or infinity")


def auroc(clean_scores: Tensor | np.ndarray, triggered_scores: Tensor | np.ndarray) -> float:
    """Area under the ROC curve, triggered = positive; ties count one half (Mann-Whitney U).

    Args:
        clean_scores: detector scores of clean inputs (a tensor or an array; higher = more likely
            triggered).
        triggered_scores: scores of triggered inputs.

    Returns:
        AUROC in [0, 1]; 0.5 is chance, below 0.5 the score points the wrong way.

    Raises:
        ValueError: either set is empty or holds NaN or infinity.
    """
    from sklearn.metrics import roc_auc_score

    c, t = _np(clean_scores), _np(triggered_scores)
    _check(c, t)
    labels = np.r_[np.zeros(len(c)), np.ones(len(t))]
    return float(roc_auc_score(labels, np.r_[c, t]))


def threshold_at_fpr(clean_scores: Tensor | np.ndarray, fpr: float) -> float:
    """The smallest threshold ``thr`` with share(clean > thr) <= fpr.

    Args:
        clean_scores: scores of clean inputs.
        fpr: the false-positive rate to allow, in [0, 1).

    Returns:
        The threshold; an input is flagged when its score is strictly above it.

    Raises:
        ValueError: ``fpr`` is outside [0, 1) or there is no clean score.
    """
    if not 0 <= fpr < 1:
        raise ValueError(f"fpr must be in [0, 1), got {fpr!r}")
    c = np.sort(_np(clean_scores))
    if len(c) == 0:
        raise ValueError("need at least one clean score to calibrate a threshold")
    k = int(np.floor(fpr * len(c)))  # at most k clean scores may lie above the threshold
    return float(c[len(c) - 1 - k]) if k < len(c) else float(c[0])


def tpr_at_fpr(clean_scores: Tensor | np.ndarray, triggered_scores: Tensor | np.ndarray, fpr: float = 0.05) -> float:
    """True-positive rate at the threshold that lets ``fpr`` of the clean scores through.

    Args:
        clean_scores: detector scores of clean inputs (a tensor or an array; higher = more likely
            triggered).
        triggered_scores: scores of triggered inputs.
        fpr: the false-positive rate on the clean scores.

    Returns:
        The share of triggered scores above :func:`threshold_at_fpr` of the clean ones.

    Raises:
        ValueError: either set is empty or holds NaN or infinity, or ``fpr`` is outside [0, 1).
    """
    c, t = _np(clean_scores), _np(triggered_scores)
    _check(c, t)
    thr = threshold_at_fpr(c, fpr)
    return float((t > thr).mean())


def roc_curve(clean_scores: Tensor | np.ndarray, triggered_scores: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) arrays for plotting.

    Args:
        clean_scores: detector scores of clean inputs (a tensor or an array; higher = more likely
            triggered).
        triggered_scores: scores of triggered inputs.

    Returns:
        ``(fpr, tpr)``, scikit-learn's ROC points, from (0, 0) to (1, 1).

    Raises:
        ValueError: either set is empty or holds NaN or infinity.
    """
    from sklearn.metrics import roc_curve as _rc

    c, t = _np(clean_scores), _np(triggered_scores)
    _check(c, t)
    fpr, tpr, _ = _rc(np.r_[np.zeros(len(c)), np.ones(len(t))], np.r_[c, t])
    return fpr, tpr


def detection_metrics(clean_scores: Tensor, triggered_scores: Tensor, threshold: float | None = None) -> dict[str, float]:
    """The detection columns of every table, from continuous scores.

    Args:
        clean_scores: detector scores of clean inputs (higher = more likely triggered).
        triggered_scores: scores of triggered inputs.
        threshold: the deployed decision threshold; with it the realised flag rates are added.

    Returns:
        ``auroc`` and ``tpr_at_5fpr`` (threshold-free), plus ``flag_rate_clean`` and
        ``flag_rate_triggered`` (the shares above ``threshold``) when a threshold is given.
    """
    out = {"auroc": auroc(clean_scores, triggered_scores), "tpr_at_5fpr": tpr_at_fpr(clean_scores, triggered_scores, 0.05)}
    if threshold is not None:
        out["flag_rate_clean"] = float((_np(clean_scores) > threshold).mean())
        out["flag_rate_triggered"] = float((_np(triggered_scores) > threshold).mean())
    return out
