"""The evaluation protocol of the book's protocol page, shared by every table.

Detection: scores on the *natural mix* (all clean test images + triggered non-target test images),
AUROC and TPR at 5% FPR from continuous scores. Elimination: the test set is split once into an
unlabelled *incoming pool* (clean images plus a share of triggered ones, where BeniFul looks for
suspicious inputs) and a disjoint *evaluation* half on which ACC and ASR are measured.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import Tensor, nn

from . import cache, locks, method_defaults, profiles, sources
from . import detectors as detectors_mod
from . import eliminators as eliminators_mod
from .datasets import ImageDataset, stratified_sample, stratified_split
from .metrics import detection_metrics
from .training import evaluate
from .utils import as_tensors, batches, resolve_device
from .case import Case

__all__ = ["natural_mix", "unseen_mix", "unused_train", "detection_row", "calibrated_rates", "elimination_split",
           "validation_split", "elimination_data",
           "incoming_pool", "usage", "elimination_row", "repaired_key", "repaired_model", "SPLITS"]

#: share of the test set that forms the unlabelled incoming pool (the rest is the evaluation half)
POOL_FRACTION = 0.5
#: share of the pool replaced by triggered copies of non-target images
POOL_POISON_SHARE = 0.1
#: the splits an elimination row can be measured on (the tables' ``"test"`` halves, or the
#: ``"validation"`` split inside the pool half, on which defaults are chosen)
SPLITS = ("test", "validation")


def natural_mix(tm: Case) -> tuple[Tensor, Tensor]:
    """The inputs a detector is scored on.

    Args:
        tm: the case (its ``test`` set and ``attack``).

    Returns:
        (all clean test images, triggered copies of the test images whose true class is not the target).

    Raises:
        ValueError: the case has no attack, so there is no trigger to apply.
    """
    if tm.attack is None:
        raise ValueError("this case has no attack, so there is no triggered input to score; pass a Case with attack=")
    x, y = tm.test.tensors()
    tm.attack.to("cpu")
    xt = torch.cat([tm.attack.apply(x[y != tm.attack.target][s]) for s in batches(int((y != tm.attack.target).sum()), 512)])
    return x, xt


def unused_train(profile: Any, dataset: str, train: ImageDataset) -> ImageDataset:
    """The training images a profile's cap leaves out: the model neither trained nor was tested on them.

    They are where a detection setting can be chosen without the test set (which the tables report)
    or the defender's clean data (a share of the training set, which the model was trained on), e.g.
    the calibration share on Fashion-MNIST's 56,000 training images outside the quick subset.

    Args:
        profile: a :class:`~beniful.profiles.Profile` or its registered name.
        dataset: the data set's registered name.
        train: its full training split, as :func:`beniful.datasets.load` gives it.

    Returns:
        The images of ``train`` outside the profile's cut (:meth:`~beniful.profiles.Profile.subset_data`).

    Raises:
        ValueError: the profile trains on the whole training split, so no image is left out.
    """
    prof = profiles.get(profile)
    n = prof.data_sizes.get(dataset, {}).get("train")
    if n is None or n >= len(train):
        capped = sorted(d for d, c in prof.data_sizes.items() if "train" in c)
        raise ValueError(f"profile {prof.name!r} trains on all {len(train)} training images of {dataset!r}, so none "
                         f"is left out; data sets it caps: {capped or 'none'}")
    idx = stratified_sample(train.targets, n, 0)
    used, _ = prof.subset_data(dataset, train, train.subset(torch.arange(1)))
    if not torch.equal(used.tensors()[0], train.subset(idx).tensors()[0]):
        raise RuntimeError("the profile's training cut is no longer the seed-0 stratified draw; update unused_train")
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[idx] = False
    return train.subset(torch.nonzero(keep).flatten())


def unseen_mix(tm: Case, images: ImageDataset) -> tuple[Tensor, Tensor]:
    """:func:`natural_mix` made from other images than the test set's (e.g. :func:`unused_train`).

    Args:
        tm: the case (its ``attack`` makes the triggered copies).
        images: labelled clean images.

    Returns:
        (``images``, triggered copies of those whose true class is not the target).
    """
    return natural_mix(tm.replace(test=images))


def detection_row(tm: Case, detector: str | detectors_mod.Detector, clean: Any = None,
                  **kwargs: Any) -> dict[str, Any]:
    """Fit a detector on the defender's clean data and measure it on the natural mix.

    Args:
        tm: the case.
        detector: a registered name (built with ``seed=tm.seed``, the per-family defaults of the case's
            data set, :mod:`beniful.method_defaults`, and ``kwargs`` over them) or a detector.
        clean: clean data instead of the case's own ``clean``.
        **kwargs: the detector's parameters, when built by name.

    Returns:
        One row of the table as a dict, with the case's columns, AUROC and TPR at 5% FPR (continuous scores), the flag rates at
        the calibrated threshold, fit time, throughput and forward passes per input. ``tpr_at_5fpr`` is an oracle: its
        threshold is set on the test set's own clean scores. ``tpr_calibrated`` and ``fpr_calibrated`` are what a user
        who deploys the detector gets: the threshold the detector calibrated on the held-out part of the defender's clean
        data (at its ``fpr``), applied to the natural mix; the share of triggered inputs flagged and the realised share
        of clean test inputs flagged (NaN for a detector without a calibrated threshold).
    """
    if isinstance(detector, str):
        det = detectors_mod.build(detector, seed=tm.seed, **method_defaults.merged("detectors", detector, tm.dataset, kwargs))
    else:
        det = detector
    det.fit(tm.model, tm.clean if clean is None else clean)
    x_clean, x_trig = natural_mix(tm)
    t0 = time.time()
    s_clean = det.score(x_clean)
    s_trig = det.score(x_trig)
    secs = time.time() - t0
    return {**tm.row(), "detector": det.name, **detection_metrics(s_clean, s_trig, det.threshold),
            **calibrated_rates(s_clean, s_trig, det.threshold), "fit_seconds": det.fit_seconds, "images_per_second": (len(x_clean) + len(x_trig)) / max(secs, 1e-9),
            "forward_passes": det.forward_passes}


def calibrated_rates(clean_scores: Tensor, triggered_scores: Tensor, threshold: float | None) -> dict[str, float]:
    """Detection at the deployable threshold: the rates a user sees when flagging with ``threshold``.

    The threshold is the detector's own (:meth:`beniful.detectors.base.Detector.calibrate`, set on
    held-out clean data of the defender), never one read off the test scores, so ``fpr_calibrated``
    can miss the detector's target FPR when the defender's clean data and the test set differ.

    Args:
        clean_scores: the detector's scores of the clean test inputs.
        triggered_scores: its scores of the triggered test inputs.
        threshold: the calibrated threshold (an input is flagged when its score is above it), or
            ``None`` when the detector has none.

    Returns:
        A dict with ``tpr_calibrated`` (the share of triggered inputs flagged) and
        ``fpr_calibrated`` (the share of clean inputs flagged), both NaN without a threshold.
    """
    if threshold is None:
        return {"tpr_calibrated": float("nan"), "fpr_calibrated": float("nan")}
    return {"tpr_calibrated": float((triggered_scores > threshold).float().mean()),
            "fpr_calibrated": float((clean_scores > threshold).float().mean())}


def elimination_split(test: ImageDataset, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """(incoming pool half, evaluation half) of the test set, stratified and fixed by ``seed``.

    Args:
        test: the labelled test set.
        seed: the case's seed; the same seed always gives the same halves.

    Returns:
        ``(pool, evaluation)``, disjoint subsets with ``POOL_FRACTION`` of each class in the pool.
    """
    a, b = stratified_split(test.targets, POOL_FRACTION, seed + 104729)
    return test.subset(a), test.subset(b)


def validation_split(tm: Case) -> tuple[ImageDataset, ImageDataset]:
    """(validation pool, validation evaluation): the incoming-pool half of the test set cut in two.

    The evaluation half of :func:`elimination_split` is never part of it, so defaults chosen here
    are not tuned on the numbers the tables report.

    Args:
        tm: the case (its ``test`` set and ``seed`` are read).

    Returns:
        ``(validation pool, validation evaluation)``, the two stratified quarters of the test set.
    """
    pool_half, _ = elimination_split(tm.test, tm.seed)
    # exactly half, not half of each class: with one image per class (a small Tiny ImageNet test set)
    # per-class rounding leaves the validation pool empty; where halves are whole, the same draw
    a = stratified_sample(pool_half.targets, len(pool_half) // 2, tm.seed + 2971)
    b = torch.ones(len(pool_half), dtype=torch.bool)
    b[a] = False
    return pool_half.subset(a), pool_half.subset(torch.nonzero(b).flatten())


def elimination_data(tm: Case, split: str = "test") -> tuple[ImageDataset, ImageDataset]:
    """(pool part, evaluation part) of ``split`` (:data:`SPLITS`) for the case.

    Args:
        tm: the case.
        split: ``"test"`` (:func:`elimination_split`) or ``"validation"`` (:func:`validation_split`).

    Returns:
        ``(pool, evaluation)`` subsets of the case's test set.

    Raises:
        ValueError: an unknown ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
    return elimination_split(tm.test, tm.seed) if split == "test" else validation_split(tm)


def incoming_pool(tm: Case, pool: ImageDataset, poison_share: float = POOL_POISON_SHARE) -> tuple[Tensor, Tensor]:
    """Unlabelled incoming inputs: the pool's clean images with ``poison_share`` of its non-target
    images replaced by their triggered version. Returns (images, is_triggered) — the flag is for
    evaluation only; defenses never see it.

    Args:
        tm: the case (its ``attack`` and ``seed``); without an attack the pool stays clean.
        pool: the pool part of the test set (:func:`elimination_data`).
        poison_share: share of the pool's size to trigger, taken from the non-target images, in [0, 1].

    Returns:
        ``(x, is_triggered)``: float images in [0, 1], ``N x C x H x W`` (a copy when any is
        triggered), and the boolean ``[N]`` flags.
    """
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


def repaired_key(tm: Case, elim: eliminators_mod.Eliminator, split: str = "test") -> str:
    """Cache key of ``elim``'s repair of ``tm`` with the default clean data and incoming pool.

    The key holds the model's own key, the eliminator's name, parameters, seed and device, the pool
    protocol (and which split's pool: ``"test"`` or ``"validation"``) and
    :func:`beniful.sources.source_digest` of the eliminator's class: its module, its bases' and,
    through their imports, everything the repair runs (BeniFul's detector, the VAE, the feature
    hooks), so an edit of any of them rebuilds the repair instead of loading a stale one.

    Args:
        tm: the case to repair (only its ``key`` is read; it must not be ``None``).
        elim: the eliminator, with the parameters it will repair with.
        split: whose pool the repair mines: ``"test"`` (the tables) or ``"validation"``.

    Returns:
        The cache key (kind ``repaired``).
    """
    cfg = {"model": tm.key, "eliminator": elim.name, "params": elim.params(), "seed": elim.seed,
           "device": str(resolve_device(elim.device_name)), "pool": [POOL_FRACTION, POOL_POISON_SHARE],
           "source": sources.source_digest(type(elim))}
    if split != "test":
        cfg["split"] = split
    return cache.config_key(cfg)


def repaired_model(tm: Case, elim: eliminators_mod.Eliminator, x_pool: Tensor, use_cache: bool = True,
                   split: str = "test") -> nn.Module:
    """``elim.repair(tm.model, tm.clean, pool=x_pool)``, loaded from the cache (kind
    ``repaired``, safetensors) when the same repair was made before, so table3, fig3 and table4
    share repaired models. On a hit ``elim.wall_seconds`` (and ``n_suspicious`` where the method
    has one) are restored from the entry, so cost columns still report the original repair.
    Repairs kept in forward hooks (FP), eliminators holding a pre-fitted detector and cases without
    a ``key`` are not cached. A repair holds its entry's lock (:mod:`beniful.locks`), so jobs that
    need the same repair at the same time make it once.

    Args:
        tm: the case whose ``model`` is repaired with its ``clean`` data.
        elim: the eliminator; on a cache hit its ``wall_seconds`` (and ``n_suspicious``,
            ``suspicious_mask``) are set from the entry.
        x_pool: the unlabelled incoming inputs (:func:`incoming_pool`).
        use_cache: ``False`` always repairs and stores nothing.
        split: whose pool ``x_pool`` is, ``"test"`` or ``"validation"`` (part of the key).

    Returns:
        The repaired model, in eval mode; ``tm.model`` is not modified.
    """
    # a detector handed to the eliminator at build time is state the key cannot see: no caching
    # then. The one BeniFul fits itself is fitted anew per repair (kept in ``last_detector``, never
    # in ``detector``), so a reused instance stays cacheable.
    cacheable = use_cache and tm.key is not None and getattr(elim, "detector", None) is None
    key = repaired_key(tm, elim, split) if cacheable else None
    def hit() -> nn.Module | None:
        entry = cache.load(key, kind="repaired")
        if entry is None:
            return None
        tensors, meta = entry
        fixed = copy.deepcopy(tm.model)
        if set(tensors) != set(fixed.state_dict()):
            return None
        fixed.load_state_dict(tensors)
        elim.wall_seconds = float(meta["wall_seconds"])
        if "n_suspicious" in meta:
            elim.n_suspicious = int(meta["n_suspicious"])
        if "suspicious" in meta:  # indices into the pool
            mask = torch.zeros(len(x_pool), dtype=torch.bool)
            mask[torch.tensor(meta["suspicious"], dtype=torch.long)] = True
            elim.suspicious_mask = mask
        return fixed.eval()

    def build() -> nn.Module:
        fixed = elim.repair(tm.model, tm.clean, pool=x_pool)
        # a repair that lives partly in forward hooks (fine-pruning's channel mask) is not in the
        # state dict: such models are not cached
        hooked = any(m._forward_hooks or m._forward_pre_hooks for m in fixed.modules())
        if key is not None and not hooked:
            meta = {"model_key": tm.key, "eliminator": elim.name, "params": elim.params(),
                    "wall_seconds": elim.wall_seconds}
            if hasattr(elim, "n_suspicious"):
                meta["n_suspicious"] = int(elim.n_suspicious)
            mask = getattr(elim, "suspicious_mask", None)
            if mask is not None:
                meta["suspicious"] = torch.nonzero(mask).flatten().tolist()
            cache.save(key, {k: v.detach().cpu().contiguous() for k, v in fixed.state_dict().items()}, meta,
                       kind="repaired")
        return fixed

    if key is None:
        return build()
    # one process repairs, others asking for the same repair wait on the entry's lock and load it
    return locks.compute_once(key, "repaired", hit, build, what=f"repair {elim.name} of model {tm.key}")


def _suspicious_stats(elim: Any, is_trig: Tensor) -> dict[str, Any]:
    """How well the pool inputs an eliminator called suspicious match the triggered ones (BeniFul)."""
    if not hasattr(elim, "suspicious_mask"):
        return {}
    mask = elim.suspicious_mask
    if mask is None:  # a pool-mining method given no pool: the same columns, nothing found
        return {"n_suspicious": 0, "suspicious_precision": float("nan"), "suspicious_recall": float("nan")}
    return {"n_suspicious": int(mask.sum()),
            "suspicious_precision": float(is_trig[mask].float().mean()) if mask.any() else float("nan"),
            "suspicious_recall": float(mask[is_trig].float().mean()) if is_trig.any() else float("nan")}


def usage(elim: eliminators_mod.Eliminator, n_clean: int, n_pool: int = 0) -> dict[str, Any]:
    """What a repair uses, for tables that compare methods on equal terms.

    Args:
        elim: the eliminator, with the parameters it repairs with.
        n_clean: the defender's clean images.
        n_pool: the incoming pool's size.

    Returns:
        ``uses_pool`` (whether it reads the unlabelled incoming pool), ``epochs`` (passes over the
        clean data: FT, FP, BeniFul-BE and ``ft_pool`` their epochs, NAD the teacher's plus the
        student's, ANP the clean images its mask search draws divided by ``n_clean``, I-BAU its
        unlearning passes) and ``steps`` (parameter or mask updates,
        :meth:`~beniful.eliminators.base.Eliminator.optimisation_steps`). Work outside the repair's
        own optimiser is not counted: BeniFul's detector fit (its VAE), FP's pruning passes, I-BAU's
        perturbation search.
    """
    return {"uses_pool": bool(elim.uses_pool), "epochs": float(elim.clean_epochs(n_clean)),
            "steps": int(elim.optimisation_steps(n_clean, n_pool))}


def elimination_row(tm: Case, eliminator: str | eliminators_mod.Eliminator, clean: Any = None,
                    split: str = "test", use_cache: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Repair the model with the defender's clean data and an unlabelled incoming pool, and measure
    ACC/ASR on a part of the test set the defense never saw.

    The one builder of every elimination row (table3, table4's form sweep, fig4's and the clean-fraction
    sweeps, the validation runs that chose BeniFul's defaults).

    Args:
        tm: the case.
        eliminator: a registered name (built with ``seed=tm.seed``, the per-family defaults of the
            case's data set, :mod:`beniful.method_defaults`, and ``kwargs`` over them) or an eliminator.
        clean: clean data instead of the case's own ``clean`` (such repairs are not cached).
        split: ``"test"`` (pool and evaluation halves of the test set) or ``"validation"`` (both
            inside the pool half; :func:`validation_split`).
        use_cache: load and store the repaired model (:func:`repaired_model`) when ``clean`` is ``None``.
        **kwargs: the eliminator's parameters, when built by name.

    Returns:
        One row of the table as a dict, with the case's columns, the split, ACC/ASR after and before the repair, wall time,
        what the method used (:func:`usage`: ``uses_pool``, ``epochs``, ``steps``) and, for eliminators that mine the
        pool, how many inputs they called suspicious and how many of those were triggered (precision, recall).
    """
    if isinstance(eliminator, str):
        elim = eliminators_mod.build(eliminator, seed=tm.seed,
                                     **method_defaults.merged("eliminators", eliminator, tm.dataset, kwargs))
    else:
        elim = eliminator
    pool_ds, eval_ds = elimination_data(tm, split)
    x_pool, is_trig = incoming_pool(tm, pool_ds)
    x_eval, y_eval = eval_ds.tensors()
    before = evaluate(tm.model, x_eval, y_eval, tm.attack)
    if clean is None:
        fixed = repaired_model(tm, elim, x_pool, use_cache=use_cache, split=split)
    else:
        fixed = elim.repair(tm.model, clean, pool=x_pool)
    after = evaluate(fixed, x_eval, y_eval, tm.attack)
    n_clean = len(as_tensors(tm.clean if clean is None else clean)[1])
    return {**tm.row(), "split": split, "eliminator": elim.name, "acc": after["acc"], "asr": after["asr"],
            "acc_before": before["acc"], "asr_before": before["asr"], "wall_seconds": elim.wall_seconds,
            **usage(elim, n_clean, len(x_pool)), **_suspicious_stats(elim, is_trig)}
