"""The evaluation protocol of METHOD.md section 3, shared by every table.

Detection: scores on the *natural mix* (all clean test images + triggered non-target test images),
AUROC and TPR at 5% FPR from continuous scores. Elimination: the test set is split once into an
unlabelled *incoming pool* (clean images plus a share of triggered ones, where BeniFul looks for
suspicious inputs) and a disjoint *evaluation* half on which ACC and ASR are measured.
"""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from . import detectors as detectors_mod
from . import eliminators as eliminators_mod
from .datasets import ImageDataset, stratified_split
from .metrics import auroc, tpr_at_fpr
from .training import evaluate
from .utils import batches
from .zoo import TrainedModel

__all__ = ["natural_mix", "detection_row", "elimination_split", "incoming_pool", "elimination_row"]

POOL_FRACTION = 0.5
POOL_POISON_SHARE = 0.1


def natural_mix(tm: TrainedModel) -> tuple[Tensor, Tensor]:
    """(all clean test images, triggered test images whose true class is not the target)."""
    if tm.attack is None:
        raise ValueError("the clean model has no trigger; pass a backdoored TrainedModel")
    x, y = tm.test.tensors()
    tm.attack.to("cpu")
    xt = torch.cat([tm.attack.apply(x[y != tm.attack.target][s]) for s in batches(int((y != tm.attack.target).sum()), 512)])
    return x, xt


def _base_row(tm: TrainedModel) -> dict[str, Any]:
    return {"dataset": tm.dataset, "attack": tm.attack_name, "seed": tm.seed, "profile": tm.profile,
            "device": tm.meta.get("device", "?")}


def detection_row(tm: TrainedModel, detector: str | detectors_mod.Detector, clean: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
    """Fit a detector on the defender's clean data and measure it on the natural mix."""
    det = detectors_mod.build(detector, seed=tm.seed, **kwargs) if isinstance(detector, str) else detector
    det.fit(tm.model, tm.clean_data() if clean is None else clean)
    x_clean, x_trig = natural_mix(tm)
    t0 = time.time()
    s_clean = det.score(x_clean)
    s_trig = det.score(x_trig)
    secs = time.time() - t0
    return {**_base_row(tm), "detector": det.name, "auroc": auroc(s_clean, s_trig),
            "tpr_at_5fpr": tpr_at_fpr(s_clean, s_trig, 0.05),
            "flag_rate_clean": float((s_clean > det.threshold).float().mean()),
            "flag_rate_triggered": float((s_trig > det.threshold).float().mean()),
            "fit_seconds": det.fit_seconds, "images_per_second": (len(x_clean) + len(x_trig)) / max(secs, 1e-9),
            "forward_passes": det.forward_passes}


def elimination_split(test: ImageDataset, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(incoming pool half, evaluation half) of the test set, stratified and fixed by ``seed``."""
    a, b = stratified_split(test.targets, POOL_FRACTION, seed + 104729)
    return test.subset(a), test.subset(b)


def incoming_pool(tm: TrainedModel, pool: ImageDataset, poison_share: float = POOL_POISON_SHARE) -> tuple[Tensor, Tensor]:
    """Unlabelled incoming inputs: the pool's clean images with ``poison_share`` of its non-target
    images replaced by their triggered version. Returns (images, is_triggered) — the flag is for
    evaluation only; defenses never see it."""
    x, y = pool.tensors()
    is_trig = torch.zeros(len(x), dtype=torch.bool)
    if tm.attack is not None and poison_share > 0:
        cand = torch.nonzero(y != tm.attack.target).flatten()
        g = torch.Generator().manual_seed(tm.seed + 15485863)
        pick = cand[torch.randperm(len(cand), generator=g)[: int(round(poison_share * len(x)))]]
        tm.attack.to("cpu")
        x = x.clone()
        x[pick] = tm.attack.apply(x[pick])
        is_trig[pick] = True
    return x, is_trig


def elimination_row(tm: TrainedModel, eliminator: str | eliminators_mod.Eliminator, clean: Any = None,
                    **kwargs: Any) -> dict[str, Any]:
    """Repair the model with the defender's clean data (+ the incoming pool) and measure ACC/ASR
    on the evaluation half of the test set, which the defense never saw."""
    elim = eliminators_mod.build(eliminator, seed=tm.seed, **kwargs) if isinstance(eliminator, str) else eliminator
    pool_ds, eval_ds = elimination_split(tm.test, tm.seed)
    x_pool, _ = incoming_pool(tm, pool_ds)
    x_eval, y_eval = eval_ds.tensors()
    before = evaluate(tm.model, x_eval, y_eval, tm.attack)
    fixed = elim.repair(tm.model, tm.clean_data() if clean is None else clean, pool=x_pool)
    after = evaluate(fixed, x_eval, y_eval, tm.attack)
    return {**_base_row(tm), "eliminator": elim.name, "acc": after["acc"], "asr": after["asr"],
            "acc_before": before["acc"], "asr_before": before["asr"], "wall_seconds": elim.wall_seconds}
