"""beniful.notebook.references: BackdoorBench's published numbers, set beside ours."""
from __future__ import annotations

import pandas as pd

from beniful import notebook as nb
from beniful.notebook import references


def test_leaderboard_holds_every_baseline_of_table3_with_its_source() -> None:
    ref = nb.backdoorbench_table()
    assert set(ref.eliminator) == {"ft", "fp", "nad", "anp", "ibau"}
    assert set(ref.dataset) == {"cifar10", "tiny-imagenet"}
    assert ref[["acc", "asr"]].apply(lambda c: c.between(0, 1)).all().all()  # fractions, like our tables
    assert (ref.source == nb.BACKDOORBENCH_SOURCE).all() and "backdoorbench.github.io" in nb.BACKDOORBENCH_SOURCE
    # the published pattern the book cites: Blended survives FT on CIFAR-10, BadNets does not
    cifar_ft = ref[(ref.dataset == "cifar10") & (ref.eliminator == "ft")].set_index("attack").asr
    assert cifar_ft["blended"] > 0.9 and cifar_ft["badnets"] < 0.05
    assert len(references.BACKDOORBENCH) == 9 * 5  # SIG is not on the Tiny ImageNet board


def test_beside_backdoorbench_joins_our_mean_over_seeds_per_attack_and_eliminator() -> None:
    ours = pd.DataFrame({"attack": ["blended", "blended", "badnets", "badnets"], "eliminator": ["ft", "ft", "ft", "beniful"],
                         "asr": [0.5, 0.7, 0.1, 0.0], "seed": [0, 1, 0, 0]})
    out = nb.beside_backdoorbench(ours, "ours: quick, fashion-mnist")
    assert list(out.columns) == ["attack", "eliminator", "BackdoorBench CIFAR-10", "BackdoorBench Tiny ImageNet",
                                 "ours: quick, fashion-mnist"]
    assert list(zip(out.attack, out.eliminator)) == [("blended", "ft"), ("badnets", "ft")]  # no BeniFul on the board
    assert out.set_index("attack").loc["blended", "ours: quick, fashion-mnist"] == 0.6
    assert abs(out.set_index("attack").loc["badnets", "BackdoorBench CIFAR-10"] - 0.0148) < 1e-9
