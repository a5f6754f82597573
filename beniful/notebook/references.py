"""Published reference numbers for the baselines, to set beside ours: BackdoorBench's leaderboard.

The paper's abstract quotes no number, so the only published figures a reader can hold our baseline
rows against are BackdoorBench's (Wu et al., NeurIPS 2022 Datasets and Benchmarks; leaderboard at
backdoorbench.github.io): the same five eliminators and attacks on CIFAR-10 and Tiny ImageNet, with
PreAct-ResNet-18, a 10 % poisoning rate and 5 % clean data for the defender, which is the protocol of
this package's paper profile. The quick profile's numbers are on other data with a narrow network:
beside these they show whether a baseline behaves as published (which attack survives which
defense), not whether the levels match.
"""
from __future__ import annotations

from typing import Any

__all__ = ["BACKDOORBENCH_SOURCE", "BACKDOORBENCH_NO_DEFENSE", "BACKDOORBENCH", "backdoorbench_table",
           "beside_backdoorbench"]

#: where every number of this module comes from
BACKDOORBENCH_SOURCE = ("BackdoorBench leaderboard (backdoorbench.github.io): PreAct-ResNet-18, poisoning rate 10%, "
                        "defender's clean data 5% of the training set")

#: BackdoorBench, CIFAR-10, no defense, ACC and ASR in %, per attack
BACKDOORBENCH_NO_DEFENSE: dict[tuple[str, str], tuple[float, float]] = {
    ("cifar10", "badnets"): (91.3, 95.0), ("cifar10", "blended"): (93.5, 99.9), ("cifar10", "sig"): (84.5, 98.3),
    ("cifar10", "wanet"): (91.3, 89.7), ("cifar10", "iad"): (90.7, 98.3),
}

#: BackdoorBench, ACC and ASR in % after each defense, keyed by (dataset, attack, eliminator)
BACKDOORBENCH: dict[tuple[str, str, str], tuple[float, float]] = {
    **{("cifar10", "badnets", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (89.96, 1.48), (91.31, 57.13), (89.87, 2.14), (84.17, 0.73), (89.16, 1.29)))},
    **{("cifar10", "blended", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (92.78, 96.11), (93.17, 99.26), (92.17, 97.69), (86.58, 2.19), (87.00, 50.53)))},
    **{("cifar10", "sig", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (90.80, 2.37), (89.10, 26.20), (90.02, 10.66), (77.97, 0.01), (85.67, 3.68)))},
    **{("cifar10", "wanet", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (93.48, 17.10), (91.46, 1.09), (93.17, 22.98), (85.73, 0.43), (89.49, 5.21)))},
    **{("cifar10", "iad", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (93.12, 1.72), (91.74, 0.04), (93.18, 1.68), (90.36, 1.64), (89.17, 27.08)))},
    **{("tiny-imagenet", "badnets", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (55.18, 0.09), (51.73, 99.99), (46.37, 0.27), (50.55, 7.74), (51.48, 97.36)))},
    **{("tiny-imagenet", "blended", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (55.04, 97.73), (51.89, 95.94), (46.89, 94.99), (54.99, 84.61), (53.03, 91.90)))},
    **{("tiny-imagenet", "wanet", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (56.74, 0.19), (53.84, 3.94), (46.98, 0.43), (53.87, 0.75), (53.71, 75.23)))},
    **{("tiny-imagenet", "iad", e): v for e, v in zip(("ft", "fp", "nad", "anp", "ibau"), (
        (57.45, 1.65), (55.28, 62.92), (47.91, 1.86), (53.17, 0.17), (52.48, 72.98)))},
}


def backdoorbench_table() -> Any:
    """The leaderboard as a tidy DataFrame: ``dataset, attack, eliminator, acc, asr`` (fractions, like
    every result table of the package), with ``source``.

    Returns:
        One row per (dataset, attack, eliminator) the leaderboard reports.
    """
    import pandas as pd

    return pd.DataFrame([{"dataset": d, "attack": a, "eliminator": e, "acc": acc / 100, "asr": asr / 100,
                          "source": BACKDOORBENCH_SOURCE} for (d, a, e), (acc, asr) in BACKDOORBENCH.items()])


def beside_backdoorbench(ours: Any, label: str) -> Any:
    """Our ASR after each baseline defense beside BackdoorBench's, one column per source.

    Args:
        ours: table3 rows (``attack, eliminator, asr``; several seeds are averaged) of one profile
            and data set.
        label: how our column is headed, e.g. ``"ours: quick, fashion-mnist"`` (say which profile and
            data: the quick profile is not the paper's setting).

    Returns:
        A DataFrame ``attack, eliminator, BackdoorBench CIFAR-10, BackdoorBench Tiny ImageNet, <label>``
        with ASRs as fractions (``NaN`` where a source has no number), for the eliminators both have.
    """

    ref = backdoorbench_table()
    wide = ref.pivot_table(index=["attack", "eliminator"], columns="dataset", values="asr", sort=False)
    wide = wide.rename(columns={"cifar10": "BackdoorBench CIFAR-10", "tiny-imagenet": "BackdoorBench Tiny ImageNet"})
    mine = ours.groupby(["attack", "eliminator"], sort=False)["asr"].mean().rename(label)
    out = wide.join(mine, how="inner").reset_index()
    order = {a: i for i, a in enumerate(dict.fromkeys(ours["attack"]))}
    return out.sort_values(["attack"], key=lambda c: c.map(order), kind="stable").reset_index(drop=True)
