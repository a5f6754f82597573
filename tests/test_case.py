"""beniful.case: the protocol runs on a model the zoo did not train, from a small record."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from beniful import attacks, evaluation
from beniful.case import Case, defender_split
from beniful.datasets import ImageDataset


class Plain(nn.Module):
    """A user's own classifier: nothing of the package's model zoo."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _data(n: int, seed: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.randint(0, 256, (n, 1, 12, 12), generator=g, dtype=torch.uint8), torch.arange(n) % 3,
                        "user-data")


@pytest.fixture
def case() -> Case:
    torch.manual_seed(0)
    atk = attacks.build("badnets", target=0, patch_size=3).setup((1, 12, 12))
    return Case(model=Plain().eval(), attack=atk, test=_data(60, 1), clean=_data(30, 2), labels={"dataset": "mine"})


def test_a_users_model_is_evaluated_from_the_record_alone(case: Case) -> None:
    row = evaluation.detection_row(case, "strip", n_overlays=2, calib_fraction=0.5, device="cpu")
    assert row["dataset"] == "mine" and row["attack"] == "badnets" and row["profile"] == "custom"
    assert 0 <= row["auroc"] <= 1
    el = evaluation.elimination_row(case, "ft", epochs=1, device="cpu")
    assert el["split"] == "test" and {"acc", "asr", "acc_before", "asr_before"} <= set(el)
    # no key: nothing is cached under an identity the record does not have
    assert evaluation.repaired_model.__doc__ and case.key is None


def test_one_row_builder_for_every_split(case: Case) -> None:
    test = evaluation.elimination_row(case, "ft", epochs=0, device="cpu")
    val = evaluation.elimination_row(case, "ft", epochs=0, device="cpu", split="validation")
    assert (test["split"], val["split"]) == ("test", "validation")
    # the validation parts lie inside the pool half: the evaluation half is never touched
    pool_half, eval_half = evaluation.elimination_split(case.test, case.seed)
    vpool, veval = evaluation.validation_split(case)
    assert len(vpool) + len(veval) == len(pool_half)
    with pytest.raises(ValueError, match="valid: test, validation"):
        evaluation.elimination_row(case, "ft", epochs=0, split="holdout")


def test_clean_data_draws_other_fractions_only_with_a_training_set(case: Case) -> None:
    assert case.clean_data() is case.clean
    with pytest.raises(ValueError, match="no training set"):
        case.clean_data(0.1)
    train = _data(300, 3)
    poisoned = torch.arange(0, 300, 3)[:20]  # some class-0 images
    full = case.replace(train=train, poisoned=poisoned)
    part = full.clean_data(0.1)
    assert 29 <= len(part) <= 31 and type(full) is Case  # stratified: per-class rounding
    # never a poisoned image, and the draw is fixed by the seed
    picked = defender_split(train, poisoned, 0.1, 0)
    assert torch.equal(part.data, picked.data)
    chosen = {bytes(img.numpy()) for img in part.data}
    assert not chosen & {bytes(img.numpy()) for img in train.data[poisoned]}


def test_natural_mix_needs_an_attack(case: Case) -> None:
    with pytest.raises(ValueError, match="no attack"):
        evaluation.natural_mix(case.replace(attack=None))


def test_defender_split_keeps_a_tiny_share_of_many_classes_instead_of_none():
    """200 classes x 3 images, 1 %: per-class rounding gives every class 0; the share is drawn exactly."""
    from beniful.case import defender_split
    from beniful.datasets import ImageDataset

    y = torch.arange(600) % 200
    train = ImageDataset(torch.zeros(600, 3, 2, 2, dtype=torch.uint8), y)
    poisoned = torch.arange(1, 61)
    clean = defender_split(train, poisoned, 0.01, 0)
    assert len(clean) == 6 and len(torch.unique(clean.targets)) == 6
    big = defender_split(train, poisoned, 0.5, 0)  # whole images per class: the stratified draw as before
    assert len(torch.unique(big.targets)) == 200


def test_validation_split_of_one_image_per_class_keeps_a_pool():
    """200 classes x 2 test images: the pool half has one per class; halving it per class rounded to
    nothing (an empty validation pool, so no suspicious inputs and no n_suspicious column)."""
    y = torch.arange(400) % 200
    tm = Case(model=nn.Identity(), attack=None, test=ImageDataset(torch.zeros(400, 1, 2, 2, dtype=torch.uint8), y),
              clean=ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8), torch.arange(2)), seed=0)
    pool, ev = evaluation.validation_split(tm)
    assert len(pool) == 100 and len(ev) == 100 and len(torch.unique(pool.targets)) == 100


def test_validation_split_of_whole_halves_is_the_per_class_draw():
    from beniful.datasets import stratified_split

    y = torch.arange(1000) % 10
    tm = Case(model=nn.Identity(), attack=None, test=ImageDataset(torch.arange(1000).reshape(-1, 1, 1, 1).to(torch.uint8)
              .expand(-1, 1, 2, 2).contiguous(), y), clean=ImageDataset(torch.zeros(2, 1, 2, 2, dtype=torch.uint8),
              torch.arange(2)), seed=3)
    half, _ = evaluation.elimination_split(tm.test, 3)
    a, b = stratified_split(half.targets, 0.5, 3 + 2971)
    pool, ev = evaluation.validation_split(tm)
    assert torch.equal(pool.data, half.data[a]) and torch.equal(ev.data, half.data[b])


def test_suspicious_columns_are_there_when_a_pool_miner_had_no_pool():
    from beniful.eliminators.beniful import BeniFulEliminator

    stats = evaluation._suspicious_stats(BeniFulEliminator(), torch.zeros(0, dtype=torch.bool))
    assert stats["n_suspicious"] == 0 and set(stats) == {"n_suspicious", "suspicious_precision", "suspicious_recall"}
    assert evaluation._suspicious_stats(object(), torch.zeros(0, dtype=torch.bool)) == {}
