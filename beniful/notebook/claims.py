"""Claims and targets beside our measurements, with ONE table of the thresholds that decide them.

Where each number comes from matters as much as the number. The paper's abstract (arXiv
2410.14723) states no number; the two quantitative statements that circulate ("AUROC typically
>= 0.92", "ASR drop > 95 %") come from an AI-written TL;DR on sciencestack.ai, a third-party
summary, and are labelled so. Every other bound is ours: a target this project set itself, or a
reading of a qualitative statement. :data:`THRESHOLDS` is read by the claims page, the paper-recipe
page, the qualitative checks of table2/table3 and fig3's counts, so a bound is changed in one place.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from .. import profiles
from .reading import describe_provenance, read_result

__all__ = ["Threshold", "THRESHOLDS", "SUMMARY", "threshold", "thresholds_table", "claims_table",
           "headline_comparison", "qualitative_detection", "qualitative_elimination", "setting_note",
           "PAPER_DATASETS", "ACC_DROP_BOUND", "ACC_DROP_FLOOR", "ASR_FLOOR", "ASR_TARGET", "KNOWN_ACC_COST", "acc_drop_tolerance", "CONTROLS", "against_baselines"]

#: the source label of the two numbers that circulate as "the paper's" but are not in its abstract
SUMMARY = "third-party summary (AI-written TL;DR on sciencestack.ai), not the paper"
OURS = "ours (this project's target)"


@dataclass(frozen=True)
class Threshold:
    """One bound that decides whether a claim or a target holds.

    Attributes:
        key: short name used in code (:func:`threshold`).
        what: the statement checked, in words.
        table: the result table it is measured in (``table2``, ``table3``, ``fig3``).
        column: the column (or derived quantity) compared with the bound.
        bound: the number.
        higher_is_better: ``True`` when the measurement must reach the bound, ``False`` when it must
            stay at or under it.
        source: where the bound comes from (:data:`SUMMARY` or ours, with why).
        group: ``claim`` (a statement about the method), ``target`` (a headline number of ours) or
            ``behaviour`` (a baseline's known qualitative behaviour).
    """

    key: str
    what: str
    table: str
    column: str
    bound: float
    higher_is_better: bool
    source: str
    group: str

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the bound (``>=`` or ``<=``, strict for the ASR drop).

        A value that equals the bound up to :data:`TIE` meets it: rates are counts over a finite test
        set, and a difference of two of them (an ACC drop of 0.980 - 0.960) lands a rounding error
        above or below the exact value.
        """
        if self.key == "asr_drop":
            return value > self.bound + TIE
        return value >= self.bound - TIE if self.higher_is_better else value <= self.bound + TIE


#: how close to a bound a measured value counts as equal to it: float32 rates carry errors near 1e-8, one
#: image of a 500-image test set is 0.002
TIE = 1e-6


THRESHOLDS: tuple[Threshold, ...] = (
    Threshold("auroc", "detection AUROC typically >= 0.92 (BeniFul, each attack)", "table2", "auroc", 0.92,
              True, SUMMARY, "claim"),
    Threshold("asr_drop", "elimination: ASR drop > 95% (BeniFul, each attack)", "table3", "asr drop", 0.95,
              True, SUMMARY, "claim"),
    Threshold("acc_loss", "elimination: minimal ACC loss (BeniFul, <= 3 points)", "table3", "acc_before - acc", 0.03,
              False, "'minimal ACC loss' from the third-party summary; the 3-point bound is ours", "claim"),
    Threshold("clean_model_flags", "Backdoor Consistency: on a model without backdoor, triggered inputs are flagged "
              "at about the FPR (<= 0.15 at a 5% target)", "fig3", "flag_rate_triggered", 0.15, False,
              "ours: the paper's Backdoor Consistency (abstract) read as a bound, 3x the 5% FPR target", "claim"),
    Threshold("target_auroc", "AUROC", "table2", "auroc", 0.95, True, OURS, "target"),
    Threshold("target_tpr", "TPR at 5% FPR", "table2", "tpr_at_5fpr", 0.90, True, OURS, "target"),
    Threshold("target_tpr_calibrated", "TPR at the calibrated threshold (deployed)", "table2", "tpr_calibrated", 0.90,
              True, OURS, "target"),
    Threshold("target_fpr_calibrated", "FPR realised at the calibrated threshold (deployed)", "table2", "fpr_calibrated",
              0.10, False, OURS, "target"),
    Threshold("target_asr", "ASR after repair", "table3", "asr", 0.05, False, OURS, "target"),
    Threshold("target_acc_drop", "ACC drop of the repair", "table3", "acc_drop", 0.02, False, OURS, "target"),
    Threshold("target_clean_model_flags", "clean model: triggered inputs flagged", "fig3", "flag_rate_triggered",
              0.15, False, OURS, "target"),
    Threshold("baselines_detect_badnets", "STRIP, SCALE-UP and IBD-PSC detect BadNets", "table2", "auroc", 0.90, True,
              "ours: the behaviour their papers report, as a bound", "behaviour"),
    Threshold("ft_removes_badnets", "FT removes BadNets", "table3", "asr", 0.10, False,
              "ours: BackdoorBench's leaderboard (FT on 5% clean data: BadNets ASR 1.5%), as a bound", "behaviour"),
)

_BY_KEY = {t.key: t for t in THRESHOLDS}

#: ours: how far below the clean model a backdoored model's ACC may fall in table1 (any attack)
ACC_DROP_BOUND = 0.03
#: attacks whose ACC cost is known to exceed :data:`ACC_DROP_BOUND`, and the cost: BackdoorBench's
#: SIG model on CIFAR-10 (PreAct-ResNet-18, 10 %) has ACC 84.5 % against 93.5 % for its clean model.
#: SIG is clean-label: at a 10 % rate every target-class training image carries the sinusoid, so the
#: model never sees a clean image of that class. (The other four attacks cost BackdoorBench 0.0-2.8
#: points, within our bound.)
KNOWN_ACC_COST: dict[str, float] = {"sig": 0.09}


#: table1's sanity floors, asserted on every run (CI re-runs table1 on whatever CPU it gets, and a
#: model trained on another CPU ends elsewhere: quick mnist5k SIG's ASR was 1.00, 0.87 and 0.75 on
#: three 2-core machines): the attack planted a backdoor at all, and cost at most this much ACC
#: beyond its known cost. Our targets (:data:`ASR_TARGET`, :data:`ACC_DROP_BOUND`) are counted in the table.
ASR_FLOOR = 0.50
#: ours: the ASR every attack should reach in table1
ASR_TARGET = 0.90
ACC_DROP_FLOOR = 0.05


def acc_drop_tolerance(attack: str, bound: float = ACC_DROP_BOUND) -> float:
    """The ACC drop table1 allows ``attack``: a bound plus the attack's known cost.

    Args:
        attack: an attack's registered name.
        bound: the bound for an attack of no known cost: :data:`ACC_DROP_BOUND` (our target) or
            :data:`ACC_DROP_FLOOR` (the sanity floor the notebook asserts).

    Returns:
        ``bound`` + :data:`KNOWN_ACC_COST` of the attack (0 when none is known).
    """
    return bound + KNOWN_ACC_COST.get(attack, 0.0)


def threshold(key: str) -> Threshold:
    """The :class:`Threshold` named ``key``; a ValueError lists the valid keys."""
    if key not in _BY_KEY:
        raise ValueError(f"unknown threshold {key!r}; valid: {', '.join(_BY_KEY)}")
    return _BY_KEY[key]


def thresholds_table() -> Any:
    """Every threshold with its source, as a DataFrame for the book."""
    import pandas as pd

    return pd.DataFrame([asdict(t) for t in THRESHOLDS])


#: the data sets the paper reports on; any other data set under the paper profile is the paper's
#: recipe (model, schedule) on other data, never the paper's reproduction
PAPER_DATASETS = ("cifar10", "tiny-imagenet")


def setting_note(profile: str, dataset: str) -> str:
    """One sentence saying what a (profile, dataset) pair is, for every book page that shows its
    numbers: only the paper profile on the paper's data sets is the like-for-like comparison."""
    if profile == "quick":
        return (f"Quick profile on {dataset}: a narrow network and a few epochs on CPU; evidence about the method, "
                "not the paper's numbers.")
    if profile == "paper" and dataset not in PAPER_DATASETS:
        return (f"The paper profile's model and schedule (PreAct-ResNet-18 at width 64, 100 epochs) on {dataset}, "
                "run on a GPU (`benchmarks/gpu_check.py`): the paper's recipe on other data, not its reproduction.")
    if profile == "paper":
        return f"The paper profile on {dataset}: the paper's setting, comparable with its numbers."
    if profile == "smoke":
        return (f"Smoke profile on {dataset}: a toy run (a few hundred images, 2 epochs) that checks the code "
                "runs end to end; its numbers mean nothing.")
    return f"Profile {profile!r} on {dataset}."


def _fact(text: str, ok: bool | None, value: str) -> str:
    mark = "not measured" if ok is None else ("yes" if ok else "no")
    return f"- {text}: {mark}" + (f" ({value})" if value else "")


def qualitative_detection(table: Any) -> str:
    """The baselines' known qualitative behaviour as measured in a table2 frame of one data set:
    STRIP, SCALE-UP and IBD-PSC detect BadNets (bound ``baselines_detect_badnets``); BeniFul has the
    best mean AUROC."""
    t = threshold("baselines_detect_badnets")
    mean = table.groupby(["detector", "attack"])["auroc"].mean()
    lines = []
    for det, name in (("strip", "STRIP"), ("scale_up", "SCALE-UP"), ("ibd_psc", "IBD-PSC")):
        v = mean.get((det, "badnets"))
        lines.append(_fact(f"{name} detects BadNets (AUROC >= {t.bound:g})", None if v is None else t.holds(v),
                           "" if v is None else f"AUROC {v:.3f}"))
    per_det = table.groupby("detector")["auroc"].mean().sort_values(ascending=False)
    if "beniful" in per_det and len(per_det) > 1:
        lines.append(_fact("BeniFul has the highest mean AUROC over the attacks", per_det.index[0] == "beniful",
                           ", ".join(f"{d} {v:.3f}" for d, v in per_det.items())))
    return "\n".join(lines)


def qualitative_elimination(table: Any) -> str:
    """Known qualitative behaviour of fine-tuning as measured in a table3 frame: FT removes BadNets
    (bound ``ft_removes_badnets``), and Blended survives FT better than BadNets does."""
    t = threshold("ft_removes_badnets")
    asr = table.groupby(["eliminator", "attack"])["asr"].mean()
    b, bl = asr.get(("ft", "badnets")), asr.get(("ft", "blended"))
    lines = [_fact(f"FT removes BadNets (ASR <= {t.bound:g})", None if b is None else t.holds(b),
                   "" if b is None else f"ASR after FT {b:.3f}"),
             _fact("Blended survives FT better than BadNets (higher ASR after FT)",
                   None if b is None or bl is None else bl > b,
                   "" if b is None or bl is None else f"Blended {bl:.3f} vs BadNets {b:.3f}")]
    return "\n".join(lines)


def _beniful_rows(df: Any, name: str) -> Any:
    """BeniFul's rows of a result table (the clean model's rows of fig3), with ``acc_drop`` added to table3."""
    if name == "table2":
        return df[df.detector == "beniful"] if "detector" in df else df.iloc[:0]
    if name == "table3":
        part = df[df.eliminator == "beniful"] if "eliminator" in df else df.iloc[:0]
        return part.assign(acc_drop=part.acc_before - part.acc) if {"acc_before", "acc"} <= set(part) else part
    return df[df.model == "clean"] if "model" in df else df.iloc[:0]


def headline_comparison(settings: Sequence[tuple[str, str]], root: str | os.PathLike | None = None) -> Any:
    """BeniFul's headline numbers (the ``target`` rows of :data:`THRESHOLDS`) per attack for each
    (profile, dataset): one row per setting x metric x attack with the mean and std over the seeds the
    tables hold, the seeds, the target and the file (with its provenance) the number comes from.

    Args:
        settings: (profile, dataset) pairs, e.g. ``[("quick", "mnist5k"), ("paper", "mnist5k")]``.
        root: results root (default :func:`beniful.paths.results_root`).

    Returns:
        A long DataFrame; settings whose tables are missing contribute no rows.
    """
    import pandas as pd

    rows = []
    for profile, dataset in settings:
        for t in (t for t in THRESHOLDS if t.group == "target"):
            df = read_result(profile, dataset, t.table, root)
            if df is None:
                continue
            ours = _beniful_rows(df, t.table)
            if t.column not in ours:
                continue  # a table written before the column existed (e.g. the calibrated rates)
            source = f"`{df.attrs['source']}` ({describe_provenance(df, profile, dataset)})"
            for attack, g in ours.groupby("attack", sort=False):
                rows.append({"profile": profile, "dataset": dataset, "metric": t.what, "attack": attack,
                             "mean": float(g[t.column].mean()),
                             "std": float(g[t.column].std(ddof=0)) if len(g) > 1 else 0.0,
                             "seeds": ",".join(str(int(s)) for s in sorted(g["seed"])) if "seed" in g else "?",
                             "target": t.bound, "higher_is_better": t.higher_is_better, "source": source})
    return pd.DataFrame(rows, columns=["profile", "dataset", "metric", "attack", "mean", "std", "seeds", "target",
                                       "higher_is_better", "source"])


def _spread(values: Any, fmt: str) -> str:
    """Mean, and ``± std`` over seeds when there is more than one."""
    mean = format(values.mean(), fmt)
    return mean if len(values) < 2 else f"{mean} ± {format(values.std(ddof=0), fmt.lstrip('+'))}"


def _per_attack(t: Threshold, values: Any, attacks: Any, fmt: str, scale: float = 1.0, unit: str = "") -> tuple[str, str]:
    """(our numbers per attack, whether the bound holds on every attack) for one threshold."""
    per = values.groupby(attacks, sort=False).mean()
    ours = ", ".join(f"{a} {_spread(scale * g, fmt)}{unit}" for a, g in values.groupby(attacks, sort=False))
    ok = per.map(t.holds)
    return ours, "yes" if ok.all() else f"{int(ok.sum())}/{len(per)} attacks"


def claims_table(profile: str = "quick", dataset: str | None = None, root: str | os.PathLike | None = None) -> Any:
    """The circulating claims (:data:`THRESHOLDS`, group ``claim``) next to our measurement for one
    profile/dataset, each with its source; ``not measured yet`` where the table or BeniFul's rows
    are missing.

    Args:
        profile: the profile whose results are read.
        dataset: the data set (default: the profile's default).
        root: results root (default :func:`beniful.paths.results_root`).

    Returns:
        DataFrame with the columns ``claim``, ``source``, ``ours (<profile>, <dataset>)`` and ``holds``.
    """
    import pandas as pd

    dataset = dataset or profiles.get(profile).default_dataset
    missing = ("not measured yet", "–")
    t2, t3, f3 = (read_result(profile, dataset, n, root) for n in ("table2", "table3", "fig3"))
    b2 = _beniful_rows(t2, "table2") if t2 is not None else None
    b3 = _beniful_rows(t3, "table3") if t3 is not None else None
    c3 = _beniful_rows(f3, "fig3") if f3 is not None else None
    best = "BeniFul detection beats the baselines (mean AUROC)"
    rows = []
    if b2 is not None and len(b2):
        rows.append((threshold("auroc"), *_per_attack(threshold("auroc"), b2["auroc"], b2["attack"], ".3f")))
        # every detector's rows: the single-seed table when the multi-seed one holds BeniFul only
        single = read_result(profile, dataset, "table2", root, multi_seed=False)
        t2_all = t2 if t2["detector"].nunique() > 1 or single is None else single
        means = t2_all.groupby("detector")["auroc"].mean().sort_values(ascending=False)
        rows.append((best, ", ".join(f"{d} {v:.3f}" for d, v in means.items()),
                     "yes" if means.index[0] == "beniful" else f"no (best: {means.index[0]})"))
    else:
        rows += [(threshold("auroc"), *missing), (best, *missing)]
    if b3 is not None and len(b3) and {"asr_before", "acc_before"} <= set(b3.columns):
        drop = 1 - b3["asr"] / b3["asr_before"].clip(lower=1e-9)
        rows.append((threshold("asr_drop"), *_per_attack(threshold("asr_drop"), drop, b3["attack"], ".1f", 100, "%")))
        loss = b3["acc_before"] - b3["acc"]
        rows.append((threshold("acc_loss"), *_per_attack(threshold("acc_loss"), loss, b3["attack"], "+.1f", 100)))
    else:
        rows += [(threshold("asr_drop"), *missing), (threshold("acc_loss"), *missing)]
    t = threshold("clean_model_flags")
    if c3 is not None and len(c3):
        rows.append((t, *_per_attack(t, c3["flag_rate_triggered"], c3["attack"], ".2f")))
    else:
        rows.append((t, *missing))
    out = [(r[0].what, r[0].source, r[1], r[2]) if isinstance(r[0], Threshold)
           else (r[0], "ours (a comparison of our own tables)", r[1], r[2]) for r in rows]
    return pd.DataFrame(out, columns=["claim", "source", f"ours ({profile}, {dataset})", "holds"])


#: the eliminators that are controls, not baselines: excluded when the strongest baseline is picked
CONTROLS = ("ft_pool",)


def _verdict(ours: float, other: float, tol: float = 0.01) -> str:
    if ours < other - tol:
        return "lower ASR"
    return "tie" if abs(ours - other) <= tol else "higher ASR"


def against_baselines(table: Any, tol: float = 0.01) -> Any:
    """BeniFul-BE beside the strongest baseline and the ``ft_pool`` control, per data set and attack,
    from table3 rows (several seeds are averaged).

    The strongest baseline of an attack is the baseline eliminator (not BeniFul, not a control) with
    the lowest ASR after repair, ties broken by higher ACC: the one a reviewer would compare against.

    Args:
        table: table3 rows (``dataset`` optional, ``attack, eliminator, acc, asr, acc_before``).
        tol: ASR differences within this count as a tie.

    Returns:
        One row per (dataset, attack): BeniFul's ACC drop and ASR, the strongest baseline's name, ACC
        drop and ASR, ``ft_pool``'s (NaN when it did not run) and the verdicts (``lower ASR``,
        ``tie``, ``higher ASR``; BeniFul's ASR against theirs).
    """
    import pandas as pd

    df = table if "dataset" in table else table.assign(dataset="")
    mean = df.groupby(["dataset", "attack", "eliminator"], sort=False)[["acc", "asr", "acc_before"]].mean()
    mean["acc_drop"] = mean.acc_before - mean.acc
    rows = []
    for (ds, attack), part in mean.groupby(level=[0, 1], sort=False):
        part = part.droplevel([0, 1])
        if "beniful" not in part.index:
            continue
        b = part.loc["beniful"]
        base = part.drop(index=["beniful", *[c for c in CONTROLS if c in part.index]])
        row = {"dataset": ds, "attack": attack, "beniful acc drop": b.acc_drop, "beniful asr": b.asr}
        if len(base):
            best = base.sort_values(["asr", "acc"], ascending=[True, False]).iloc[0]
            row.update({"strongest baseline": best.name, "its acc drop": best.acc_drop, "its asr": best.asr,
                        "vs strongest": _verdict(b.asr, best.asr, tol)})
        if "ft_pool" in part.index:
            c = part.loc["ft_pool"]
            row.update({"ft_pool acc drop": c.acc_drop, "ft_pool asr": c.asr, "vs ft_pool": _verdict(b.asr, c.asr, tol)})
        rows.append(row)
    return pd.DataFrame(rows)
