"""Ablations and diagnostics of BeniFul (table4, fig2, fig3, fig4), each returning a tidy DataFrame.

Every function takes one or more :class:`~beniful.case.Case` (e.g. from ``zoo.get``) and returns
one row per measurement, with the columns of :func:`beniful.evaluation.detection_row` /
:func:`~beniful.evaluation.elimination_row` plus the varied parameter. Detection numbers come from
continuous scores on the natural mix; elimination numbers from the evaluation half of the test set
(``split="test"``) or, for choosing defaults, from the validation split below (``split="validation"``),
which never touches the evaluation half.

Where a sweep varies only how the score is read (signal), one fitted detector serves all rows;
where it varies the eliminator's loss (form, lambda), one fitted detector is shared by all repairs
of the same model, so the sweep costs one VAE fit per model.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
from torch import Tensor

from .detectors.beniful import SIGNALS, BeniFulDetector
from .eliminators.beniful import FORMS, BeniFulEliminator
from . import method_defaults
from .case import Case
from .evaluation import elimination_row, elimination_split, incoming_pool, natural_mix, repaired_model
from .metrics import auroc, detection_metrics
from .training import evaluate
from .utils import check_fraction, predict_logits

__all__ = ["detection_by_signal",
           "detection_by_layer", "detection_by_clean_fraction", "elimination_by_form",
           "backdoor_consistency", "signal_distributions", "detection_by_param",
           "sensitivity_to_rate", "elimination_by_setting", "INGREDIENTS", "elimination_ingredients"]

LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _as_list(tms: Case | Iterable[Case]) -> list[Case]:
    return [tms] if isinstance(tms, Case) else list(tms)


# ---------------------------------------------------------------------------------- detection
def detection_by_signal(tms: Case | Iterable[Case], layer: str = "layer3",
                        inputs: Callable[[Case], tuple[Tensor, Tensor]] = natural_mix,
                        **detector_kwargs: Any) -> pd.DataFrame:
    """AUROC / TPR@5%FPR / flag rates of r alone, c alone and both, from one fitted detector per model.

    Args:
        tms: one case or several (e.g. from ``zoo.get``).
        layer: the detector's middle layer.
        inputs: ``case -> (clean images, triggered images)`` to score: the natural mix of the test
            set (:func:`~beniful.evaluation.natural_mix`), or, to choose a setting without looking
            at the test set, images the model was neither trained nor tested on.
        **detector_kwargs: passed to :class:`~beniful.detectors.beniful.BeniFulDetector`.

    Returns:
        One row per model and signal (``r``, ``c``, ``both``); ``flag_rate_clean`` is the realised
        false-positive rate of the threshold the detector calibrated on its held-out clean data.
    """
    rows = []
    for tm in _as_list(tms):
        det = BeniFulDetector(layer=layer, seed=tm.seed, **detector_kwargs).fit(tm.model, tm.clean)
        x_clean, x_trig = inputs(tm)
        sc, st = det.scores_by_signal(x_clean), det.scores_by_signal(x_trig)
        for sig in SIGNALS:
            rows.append({**tm.row(), "detector": "beniful", "layer": layer, "signal": sig,
                         **detection_metrics(sc[sig], st[sig], det.thresholds[sig])})
    return pd.DataFrame(rows)


def detection_by_layer(tms: Case | Iterable[Case], layers: Sequence[str] = LAYERS,
                       **detector_kwargs: Any) -> pd.DataFrame:
    """Detection (all three signals) with the VAE on each middle layer.

    Args:
        tms: one case or several (e.g. from ``zoo.get``).
        layers: the middle layers to compare.
        **detector_kwargs: passed to :class:`~beniful.detectors.beniful.BeniFulDetector`.

    Returns:
        The rows of :func:`detection_by_signal` for every layer.
    """
    frames = [detection_by_signal(tms, layer=layer, **detector_kwargs) for layer in layers]
    return pd.concat(frames, ignore_index=True)


def detection_by_clean_fraction(tms: Case | Iterable[Case],
                                fractions: Sequence[float] = (0.01, 0.025, 0.05, 0.1),
                                layer: str = "layer3", **detector_kwargs: Any) -> pd.DataFrame:
    """Detection with the defender holding ``fraction`` of the training set as clean data.

    Args:
        tms: one case or several (e.g. from ``zoo.get``).
        fractions: shares of the training set's size, each in (0, 1].
        layer: the detector's middle layer.
        **detector_kwargs: passed to :class:`~beniful.detectors.beniful.BeniFulDetector`.

    Returns:
        One row per model, fraction and signal, with ``clean_fraction`` and ``n_clean``.

    Raises:
        ValueError: a fraction outside (0, 1].
    """
    rows = []
    for tm in _as_list(tms):
        x_clean, x_trig = natural_mix(tm)
        for frac in fractions:
            check_fraction(frac, "clean fraction")
            clean = tm.clean_data(fraction=frac)
            det = BeniFulDetector(layer=layer, seed=tm.seed, **detector_kwargs).fit(tm.model, clean)
            sc, st = det.scores_by_signal(x_clean), det.scores_by_signal(x_trig)
            for sig in SIGNALS:
                rows.append({**tm.row(), "detector": "beniful", "layer": layer, "signal": sig,
                             "clean_fraction": frac, "n_clean": len(clean),
                             **detection_metrics(sc[sig], st[sig], det.thresholds[sig])})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- elimination
def elimination_by_form(tms: Case | Iterable[Case], forms: Sequence[str] = FORMS,
                        lams: Sequence[float] = (0.1, 1.0, 10.0), split: str = "test", layer: str = "layer3",
                        **eliminator_kwargs: Any) -> pd.DataFrame:
    """ACC/ASR after BeniFul elimination for every (form, lambda); ``split="validation"`` measures on
    the validation split (for choosing defaults), ``"test"`` on the evaluation half (for the table).
    ``lam=0`` is plain fine-tuning with the same optimiser (a useful reference row).

    Args:
        tms: one case or several (e.g. from ``zoo.get``).
        forms: loss forms (any ``+``-join of ``a``, ``b``, ``c``, ``t``).
        lams: weights of the feature-distance terms.
        split: ``"test"`` or ``"validation"``.
        layer: the middle layer of the detector and the loss.
        **eliminator_kwargs: passed to :class:`~beniful.eliminators.beniful.BeniFulEliminator`.
            ``detector_kwargs`` among them goes to the detector.

    Returns:
        One row per model, form and lambda, with ``layer``, ``form`` and ``lam``.

    Raises:
        ValueError: ``split`` is neither ``"test"`` nor ``"validation"``.
    """
    if split not in ("test", "validation"):
        raise ValueError(f"split must be 'test' or 'validation', got {split!r}")
    rows = []
    detector_kwargs = dict(eliminator_kwargs.pop("detector_kwargs", None) or {})
    for tm in _as_list(tms):
        # with the detector cache every repair fetches the same fitted detector and the repairs can be
        # cached too; without it one detector fitted here serves every repair (not cacheable)
        shared = {} if detector_kwargs.get("cache") else {
            "detector": BeniFulDetector(layer=layer, seed=tm.seed, **detector_kwargs).fit(tm.model, tm.clean)}
        for form in forms:
            for lam in lams:
                kw = method_defaults.merged("eliminators", "beniful", tm.dataset, eliminator_kwargs)
                elim = BeniFulEliminator(layer=layer, form=form, lam=lam, seed=tm.seed, detector_kwargs=detector_kwargs,
                                         **shared, **kw)
                row = elimination_row(tm, elim, split=split)
                rows.append({**row, "layer": layer, "form": form, "lam": lam})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- fig2 / fig3
def signal_distributions(tm: Case, layer: str = "layer3", **detector_kwargs: Any) -> pd.DataFrame:
    """Per-input raw r, c and scores on the natural mix (one row per input; ``triggered`` 0/1) for
    histograms and ROC curves (fig2).

    Args:
        tm: a backdoored trained model.
        layer: the detector's middle layer.
        **detector_kwargs: passed to :class:`~beniful.detectors.beniful.BeniFulDetector`.

    Returns:
        One row per input of the natural mix, with ``r``, ``c``, ``score_<signal>``, ``triggered``, the
        model's provenance, the layer and each signal's threshold.
    """
    det = BeniFulDetector(layer=layer, seed=tm.seed, **detector_kwargs).fit(tm.model, tm.clean)
    x_clean, x_trig = natural_mix(tm)
    frames = []
    for lab, x in ((0, x_clean), (1, x_trig)):
        sig = det.signals(x)
        sc = det.scores_by_signal(x)
        frames.append(pd.DataFrame({"r": sig["r"].numpy(), "c": sig["c"].numpy(),
                                    **{f"score_{k}": v.numpy() for k, v in sc.items()}, "triggered": lab}))
    df = pd.concat(frames, ignore_index=True)
    for k, v in tm.row().items():
        df[k] = v
    df["layer"] = layer
    df["threshold_both"], df["threshold_r"], df["threshold_c"] = (det.thresholds[k] for k in SIGNALS)
    return df


def backdoor_consistency(tms: Case | Iterable[Case], clean_tm: Case | None = None,
                         eliminate: bool = True, layer: str = "layer3", detector_kwargs: dict | None = None,
                         **eliminator_kwargs: Any) -> pd.DataFrame:
    """Flag rates of the detector on clean and triggered test inputs (fig3):

    - ``model="backdoored"``: the detector fitted on each backdoored model;
    - ``model="clean"``: fitted on ``clean_tm`` (a model trained without poison), flagging the same
      attack's triggered inputs; Backdoor Consistency says these should stay near the FPR;
    - ``model="repaired"`` (``eliminate=True``): a fresh detector fitted on the BeniFul-repaired model.

    All rates, ACC and ASR are measured on the evaluation half of the test set (the repair sees the
    other half as its incoming pool), so the three rows of one attack are comparable.

    A trigger can change a model's prediction without any poisoning: on MNIST a full-image blend or
    sinusoid sends most digits of a *clean* model to one class. So each row also says how often the
    model keeps the true class of a triggered input (``keeps_class``) and the flag rate among those
    inputs (``flag_rate_triggered_kept``) and among the others (``flag_rate_triggered_flipped``):
    a detector that finds backdoor behaviour rather than unusual inputs flags the kept ones at
    about the FPR.

    Args:
        tms: one case or several (e.g. from ``zoo.get``).
        clean_tm: a model trained without poison on the same data, or ``None`` (no ``clean`` rows).
        eliminate: also measure the BeniFul-repaired model (shared with table3 through the cache).
        layer: the middle layer of the detectors and the repair.
        detector_kwargs: passed to every detector (and to the eliminator's).
        **eliminator_kwargs: passed to :class:`~beniful.eliminators.beniful.BeniFulEliminator`.

    Returns:
        One row per model and ``model`` kind (``backdoored``, ``clean``, ``repaired``).
    """
    detector_kwargs = dict(detector_kwargs or {})
    rows = []

    def fit(model: Any, tm: Case, seed: int) -> BeniFulDetector:
        return BeniFulDetector(layer=layer, seed=seed, **detector_kwargs).fit(model, tm.clean)

    # the clean model's clean data does not depend on the attack: one detector serves every attack
    clean_det = fit(clean_tm.model, clean_tm, clean_tm.seed) if clean_tm is not None else None

    def measure(model: Any, tm: Case, which: str, seed: int, det: BeniFulDetector | None = None
                ) -> dict[str, Any]:
        t0 = time.time()
        det = det if det is not None else fit(model, tm, seed)
        x_clean, x_trig = natural_mix(tm)
        s_clean, s_trig = det.score(x_clean), det.score(x_trig)
        x, y = tm.test.tensors()
        m = evaluate(model, x, y, tm.attack)  # tm.test is the evaluation half here
        flagged = s_trig > det.threshold
        kept = predict_logits(det.model, x_trig).argmax(1) == y[y != tm.attack.target]  # natural_mix's order

        def share(mask: Tensor) -> float:
            return float(flagged[mask].float().mean()) if mask.any() else float("nan")

        return {**tm.row(), "model": which, "acc": m["acc"], "asr": m["asr"], "fpr_target": det.fpr,
                "flag_rate_clean": float((s_clean > det.threshold).float().mean()),
                "flag_rate_triggered": float(flagged.float().mean()),
                "keeps_class": float(kept.float().mean()), "flag_rate_triggered_kept": share(kept),
                "flag_rate_triggered_flipped": share(~kept),
                "auroc": auroc(s_clean, s_trig), "seconds": time.time() - t0}

    for tm in _as_list(tms):
        pool_ds, eval_ds = elimination_split(tm.test, tm.seed)
        view = tm.replace(test=eval_ds)
        rows.append(measure(tm.model, view, "backdoored", tm.seed))
        if clean_tm is not None:
            # the clean model judged on this attack's trigger: same data, no backdoor
            cview = clean_tm.replace(attack=tm.attack, test=eval_ds)
            row = measure(clean_tm.model, cview, "clean", clean_tm.seed, det=clean_det)
            rows.append({**row, "attack": tm.attack_name})
        if eliminate:
            x_pool, _ = incoming_pool(tm, pool_ds)
            kw = method_defaults.merged("eliminators", "beniful", tm.dataset, eliminator_kwargs)
            elim = BeniFulEliminator(layer=layer, seed=tm.seed, detector_kwargs=detector_kwargs, **kw)
            fixed = repaired_model(tm, elim, x_pool)  # shared with table3 through the cache
            rows.append(measure(fixed, view, "repaired", tm.seed))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- fig4
def detection_by_param(tms: Case | Iterable[Case], param: str, values: Sequence[Any],
                       layer: str = "layer3", inputs: Callable[[Case], tuple[Tensor, Tensor]] = natural_mix,
                       **detector_kwargs: Any) -> pd.DataFrame:
    """Detection (combined score) with one detector parameter varied, e.g. ``param="latent_dim"``;
    an unknown parameter fails in the detector's constructor with its valid names.

    Args:
        tms: one case or several (e.g. from ``zoo.get``).
        param: the detector parameter to vary.
        values: its values.
        layer: the detector's middle layer.
        inputs: the images to score, as in :func:`detection_by_signal`.
        **detector_kwargs: passed to :class:`~beniful.detectors.beniful.BeniFulDetector`.

    Returns:
        The combined score's rows, with ``param`` and ``value``.

    Raises:
        ValueError: ``param`` is also given in ``detector_kwargs``.
    """
    if param in detector_kwargs:
        raise ValueError(f"{param!r} is varied here; do not also pass it in detector_kwargs")
    frames = []
    for v in values:
        df = detection_by_signal(tms, layer=layer, inputs=inputs, **{param: v}, **detector_kwargs)
        frames.append(df[df.signal == "both"].assign(param=param, value=v))
    return pd.concat(frames, ignore_index=True)


def elimination_by_setting(tms: Case | Iterable[Case], settings: dict[str, dict[str, Any]],
                           eliminator: str = "beniful", split: str = "validation", **common: Any) -> pd.DataFrame:
    """One elimination row per case and named setting: how a default is chosen on the validation split.

    Each setting's keyword arguments go over ``common`` and the data set's per-family defaults
    (:func:`beniful.evaluation.elimination_row` builds the eliminator by name), e.g.::

        elimination_by_setting(models, {"momentum 0": {"momentum": 0.0}, "momentum 0.9": {"momentum": 0.9}},
                               detector_kwargs={"cache": True})

    Args:
        tms: one case or several.
        settings: ``{label: eliminator keyword arguments}``.
        eliminator: the eliminator's registered name.
        split: ``"validation"`` (default; where defaults are chosen) or ``"test"``.
        **common: keyword arguments of every setting.

    Returns:
        The rows of :func:`~beniful.evaluation.elimination_row` with ``setting`` and ``acc_drop``
        (``acc_before - acc``).
    """
    rows = []
    for tm in _as_list(tms):
        for label, kw in settings.items():
            row = elimination_row(tm, eliminator, split=split, **{**common, **kw})
            rows.append({**row, "setting": label, "acc_drop": row["acc_before"] - row["acc"]})
    return pd.DataFrame(rows)


#: BeniFul-BE's ingredients, each switched off alone at the defaults (``form="a+t"``, ``lam=1``,
#: ``relabel=3``, ``keep=1``, ``transplant_ce=1``, ``exclude_target``, ``target_filter``):
#: ``{variant: (what is switched off, the eliminator's keyword overrides)}``. ``lam=0`` keeps the
#: transplanted images' cross-entropy, ``relabel`` and ``keep``, so it is not plain fine-tuning; the
#: last row is (BeniFul-BE's optimiser on the clean data alone), and "only feature distance" keeps the
#: two feature-distance terms and nothing that adds labelled data.
INGREDIENTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("nothing", {}),
    "no a": ("term a (pull flagged inputs towards the VAE reconstruction)", {"form": "t"}),
    "no t": ("term t (transplanted trigger: its feature distance and its cross-entropy)", {"form": "a"}),
    "no transplant CE": ("the transplanted images' cross-entropy (t's feature distance kept)", {"transplant_ce": 0.0}),
    "lam 0": ("both feature distances (a's and t's; relabel, keep, transplant CE kept)", {"lam": 0.0}),
    "no relabel": ("relabel (cross-entropy on flagged inputs with inferred labels)", {"relabel": 0.0}),
    "no exclude_target": ("exclude_target (relabel may use the inferred target class)", {"exclude_target": False}),
    "no keep": ("keep (self-distillation on unflagged pool inputs)", {"keep": 0.0}),
    "no target_filter": ("target_filter (every flagged input counts as suspicious)", {"target_filter": False}),
    "only feature distance": ("relabel, keep and transplant CE (a's and t's feature distances kept)",
                              {"relabel": 0.0, "keep": 0.0, "transplant_ce": 0.0}),
    "plain fine-tuning": ("every BeniFul term (BeniFul-BE's optimiser on the clean data only)",
                          {"form": "a", "lam": 0.0, "relabel": 0.0, "keep": 0.0, "transplant_ce": 0.0}),
}


def elimination_ingredients(tms: Case | Iterable[Case], split: str = "validation",
                            variants: Sequence[str] | None = None, **common: Any) -> pd.DataFrame:
    """Which of BeniFul-BE's ingredients removes the backdoor: the defaults, each ingredient switched
    off alone, only the feature-distance terms kept, and none of them (:data:`INGREDIENTS`).

    Every variant is built by name (:func:`beniful.evaluation.elimination_row`) over the data set's
    per-family defaults and ``common``; the variant's overrides win. On ``split="validation"`` the
    evaluation half of the test set is never touched.

    Args:
        tms: one case or several.
        split: ``"validation"`` (default) or ``"test"``.
        variants: labels of :data:`INGREDIENTS` to run (``None``: all, in table order).
        **common: keyword arguments of every variant (e.g. ``detector_kwargs={"cache": True}``).

    Returns:
        A DataFrame with one row per case and variant, holding the columns of
        :func:`~beniful.evaluation.elimination_row` and ``variant``, ``switched_off``, ``overrides``
        (their repr) and ``acc_drop``.

    Raises:
        ValueError: an unknown variant, or ``common`` setting a parameter that a variant switches off.
    """
    names = list(INGREDIENTS) if variants is None else list(variants)
    unknown = [v for v in names if v not in INGREDIENTS]
    if unknown:
        raise ValueError(f"unknown ingredient variant(s) {', '.join(map(repr, unknown))}; valid: {', '.join(INGREDIENTS)}")
    clash = sorted({k for v in names for k in INGREDIENTS[v][1]} & set(common))
    if clash:
        raise ValueError(f"{', '.join(clash)} is what the variants switch off; do not also pass it in common")
    rows = []
    for tm in _as_list(tms):
        for label in names:
            off, kw = INGREDIENTS[label]
            row = elimination_row(tm, "beniful", split=split, **{**common, **kw})
            rows.append({**row, "variant": label, "switched_off": off, "overrides": repr(kw),
                         "acc_drop": row["acc_before"] - row["acc"]})
    return pd.DataFrame(rows)


def sensitivity_to_rate(attack: str, rates: Sequence[float], zoo_kwargs: dict[str, Any], layer: str = "layer3",
                        **detector_kwargs: Any) -> pd.DataFrame:
    """One backdoored model per poisoning ``rate`` (trained once, then cached by ``zoo.get``): its
    ACC/ASR and the detection metrics of the combined score.

    Args:
        attack: the attack's registry name.
        rates: poisoning rates, each in (0, 1].
        zoo_kwargs: passed to ``zoo.get`` (e.g. ``profile``, ``seed``).
        layer: the detector's middle layer.
        **detector_kwargs: passed to :class:`~beniful.detectors.beniful.BeniFulDetector`.

    Returns:
        One row per rate, with ``param="rate"``, ``value``, and the model's ``acc`` and ``asr``.

    Raises:
        ValueError: a rate outside (0, 1].
    """
    from . import zoo

    rows = []
    for r in rates:
        check_fraction(r, "poisoning rate")
        tm = zoo.get(attack, progress=False, rate=r, **zoo_kwargs)
        det = detection_by_signal(tm, layer=layer, **detector_kwargs)
        det = det[det.signal == "both"].iloc[0].to_dict()
        rows.append({**det, "param": "rate", "value": r, "acc": tm.metrics["acc"], "asr": tm.metrics["asr"]})
    return pd.DataFrame(rows)
