"""beniful.evaluation: detection at the deployable (calibrated) threshold and what each repair uses."""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from beniful import evaluation, profiles
from beniful.datasets import ImageDataset
from beniful.detectors.base import Detector
from beniful.eliminators.base import steps_per_epoch
from beniful.metrics import threshold_at_fpr


class MeanScore(Detector):
    """Score = mean pixel value: the BadNets white patch raises it a little; nothing is learnt."""

    name = "mean_score"

    def _score(self, x: Tensor) -> Tensor:
        return x.flatten(1).mean(1)


def test_calibrated_rates_flag_above_the_threshold_and_are_nan_without_one() -> None:
    clean, trig = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 5.0])
    assert evaluation.calibrated_rates(clean, trig, 1.5) == pytest.approx({"tpr_calibrated": 2 / 3, "fpr_calibrated": 0.5})
    assert all(math.isnan(v) for v in evaluation.calibrated_rates(clean, trig, None).values())


def test_detection_row_applies_the_detectors_own_threshold_to_the_natural_mix(tiny_badnets_tm) -> None:
    tm = tiny_badnets_tm
    x_clean, x_trig = evaluation.natural_mix(tm)
    # the defender's clean images are darker than the test images: the threshold calibrated on them
    # sits below most clean test scores, so the deployed detector flags far more than its 5%
    xd, yd = tm.clean.tensors()
    det = MeanScore(device="cpu")
    row = evaluation.detection_row(tm, det, clean=(xd * 0.9, yd))
    s_clean, s_trig = det.score(x_clean), det.score(x_trig)
    assert row["fpr_calibrated"] == pytest.approx(float((s_clean > det.threshold).float().mean()))
    assert row["tpr_calibrated"] == pytest.approx(float((s_trig > det.threshold).float().mean()))
    assert row["fpr_calibrated"] > 0.5 and row["tpr_calibrated"] > row["tpr_at_5fpr"]
    # the oracle column keeps its threshold on the test set's own clean scores
    oracle = threshold_at_fpr(s_clean, 0.05)
    assert row["tpr_at_5fpr"] == pytest.approx(float((s_trig > oracle).float().mean()))
    # calibrated on clean data like the test set's, the realised FPR is near the target
    same = evaluation.detection_row(tm, MeanScore(device="cpu"))
    assert same["fpr_calibrated"] < 0.25 and same["fpr_calibrated"] != row["fpr_calibrated"]


@pytest.mark.parametrize("name, uses_pool", [("ft", False), ("ft_pool", True)])
def test_elimination_row_says_what_the_repair_used(tiny_badnets_tm, name: str, uses_pool: bool) -> None:
    row = evaluation.elimination_row(tiny_badnets_tm, name, use_cache=False, epochs=2, batch_size=16, device="cpu")
    n = len(tiny_badnets_tm.clean.tensors()[1])
    assert row["uses_pool"] is uses_pool and row["epochs"] == 2.0
    assert row["steps"] == 2 * steps_per_epoch(n, 16)


def test_unused_train_is_the_complement_of_the_profiles_cut() -> None:
    """The images left for choosing a setting are exactly those the profile's models never saw."""
    g = torch.Generator().manual_seed(0)
    full = ImageDataset(torch.randint(0, 256, (4500, 1, 28, 28), dtype=torch.uint8, generator=g),
                        torch.arange(4500) % 10, name="fashion-mnist")
    used, _ = profiles.get("quick").subset_data("fashion-mnist", full, full)
    left = evaluation.unused_train("quick", "fashion-mnist", full)
    assert len(used) == 4000 and len(left) == 500
    seen = {bytes(x.numpy()) for x in used.data}
    assert not any(bytes(x.numpy()) in seen for x in left.data)
    assert torch.bincount(left.targets, minlength=10).tolist() == [50] * 10


def test_unused_train_refuses_a_data_set_the_profile_uses_whole() -> None:
    full = ImageDataset(torch.zeros(20, 1, 28, 28, dtype=torch.uint8), torch.arange(20) % 10)
    with pytest.raises(ValueError, match=r"'mnist5k'.*fashion-mnist"):
        evaluation.unused_train("quick", "mnist5k", full)


def test_unseen_mix_triggers_the_given_images_not_the_test_set(tiny_badnets_tm) -> None:
    x, y = tiny_badnets_tm.test.tensors()
    other = tiny_badnets_tm.test.subset(torch.arange(30))
    x_clean, x_trig = evaluation.unseen_mix(tiny_badnets_tm, other)
    assert len(x_clean) == 30 and len(x_trig) == int((other.targets != tiny_badnets_tm.attack.target).sum())
    assert torch.equal(x_clean, x[:30])
