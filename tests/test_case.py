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
    assert len(part) == 30 and type(full) is Case  # stratified: 10 of each class's 100
    assert torch.bincount(part.targets).tolist() == [10, 10, 10]
    # the draw is fixed by the seed (and only by it), and a new seed draws other images
    picked = defender_split(train, 0.1, 0)
    assert torch.equal(part.data, picked.data)
    assert not torch.equal(defender_split(train, 0.1, 1).data, picked.data)
    assert len(defender_split(train, 1.0, 0)) == 300


@pytest.mark.parametrize("classes, per_class", [(10, 5000), (200, 500)], ids=["cifar10", "tiny-imagenet"])
def test_defender_data_holds_every_class_when_sig_poisons_the_whole_target_class(classes: int, per_class: int) -> None:
    """SIG at the paper profile's rate poisons every target-class training image of CIFAR-10 (5,000 =
    10 % of 50,000) and of Tiny ImageNet (10,000 asked, 500 there); the defender's clean copies still
    hold every class, the target class with its full share."""
    from beniful import profiles

    paper = profiles.get("paper")
    y = torch.arange(classes * per_class) % classes
    train = ImageDataset(torch.zeros(len(y), 3, 2, 2, dtype=torch.uint8), y, "shape-only")
    sig = attacks.build("sig", seed=0, **paper.attack_kwargs("sig"))
    poisoned = sig.poison_indices(y)
    assert torch.equal(poisoned, torch.nonzero(y == sig.target).flatten())  # the whole target class
    clean = defender_split(train, paper.clean_fraction, seed=0)
    counts = torch.bincount(clean.targets, minlength=classes)
    assert (counts == round(paper.clean_fraction * per_class)).all(), counts.unique()


def test_defender_data_keeps_one_image_of_every_class_in_a_small_set() -> None:
    y = torch.arange(400) % 200  # two images per class, as in a few hundred Tiny ImageNet images
    train = ImageDataset(torch.zeros(400, 3, 2, 2, dtype=torch.uint8), y, "small")
    clean = defender_split(train, 0.05, seed=0)
    assert torch.equal(torch.unique(clean.targets), torch.arange(200))
    with pytest.raises(ValueError, match="clean fraction"):
        defender_split(train, 0.0, seed=0)


def test_natural_mix_needs_an_attack(case: Case) -> None:
    with pytest.raises(ValueError, match="no attack"):
        evaluation.natural_mix(case.replace(attack=None))


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
