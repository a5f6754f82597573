import pytest

from beniful import profiles
from beniful.zoo import model_config


def test_profiles_listed_and_unknown_rejected():
    assert profiles.available() == ["paper", "quick", "smoke"]
    with pytest.raises(ValueError, match="valid profiles: paper, quick, smoke"):
        profiles.get("fast")


def test_paper_profile_is_backdoorbench_setting():
    p = profiles.get("paper")
    t = p.train_config("cifar10")
    assert (p.width, t.epochs, t.lr, t.batch_size, t.momentum, t.weight_decay) == (64, 100, 0.01, 128, 0.9, 5e-4)
    assert t.crop_padding == 4 and t.hflip
    assert p.train_config("tiny-imagenet").epochs == 200
    assert (p.target, p.rate, p.clean_fraction) == (0, 0.1, 0.05)


def test_cache_key_changes_with_everything_that_matters():
    from beniful import attacks, cache

    q = profiles.get("quick")
    base = cache.config_key(model_config("mnist5k", attacks.build("badnets"), q, 0))
    assert base == cache.config_key(model_config("mnist5k", attacks.build("badnets"), q, 0))
    others = [
        model_config("mnist5k", attacks.build("badnets"), q, 1),
        model_config("mnist5k", attacks.build("badnets", rate=0.05), q, 0),
        model_config("mnist5k", attacks.build("blended"), q, 0),
        model_config("mnist5k", None, q, 0),
        model_config("mnist5k", attacks.build("badnets"), profiles.get("paper"), 0),
    ]
    assert len({base} | {cache.config_key(c) for c in others}) == 6


def test_profile_names_ignore_case_and_dash_underscore():
    assert profiles.get("QUICK") is profiles.get("quick")
    assert profiles.PROFILES.canonical("Quick") == "quick"


def test_registering_a_profile_makes_get_work_and_a_duplicate_is_refused():
    from beniful.training import TrainConfig

    smoke = profiles.Profile(name="smoke-test", description="unit test", width=2, train=TrainConfig(epochs=1))
    assert profiles.register(smoke) is smoke
    try:
        assert profiles.get("smoke_test") is smoke and profiles.get("smoke-test") is smoke
        assert profiles.available() == ["paper", "quick", "smoke", "smoke-test"]
        with pytest.raises(ValueError, match="registered twice"):
            profiles.register(profiles.Profile(name="smoke_test", description="", width=2, train=TrainConfig()))
    finally:
        profiles.PROFILES.unregister("smoke-test")
    assert profiles.available() == ["paper", "quick", "smoke"]
    with pytest.raises(ValueError, match="registered twice"):
        profiles.register(profiles.get("quick"))
    with pytest.raises(TypeError, match="takes a Profile"):
        profiles.register("quick")  # type: ignore[arg-type]


def test_a_profile_object_is_returned_as_is():
    q = profiles.get("quick")
    assert profiles.get(q) is q


def test_smoke_profile_is_the_paper_recipe_at_toy_sizes():
    paper, smoke = profiles.get("paper"), profiles.get("smoke")
    for ds in ("cifar10", "tiny-imagenet", "mnist5k"):
        p, s = paper.train_config(ds), smoke.train_config(ds)
        assert (s.lr, s.momentum, s.weight_decay, s.crop_padding, s.hflip) == \
            (p.lr, p.momentum, p.weight_decay, p.crop_padding, p.hflip)
        assert s.epochs <= 2
    assert not smoke.train_config("mnist5k").hflip
    assert (smoke.target, smoke.rate, smoke.default_dataset) == (paper.target, paper.rate, paper.default_dataset)
    assert smoke.width < paper.width and not smoke.quality_checks and paper.quality_checks
    assert smoke.data_sizes["cifar10"]["train"] <= 1000 and smoke.data_sizes["tiny-imagenet"]["train"] <= 2000


def test_smoke_clean_data_keeps_a_tiny_imagenet_image_per_class():
    """200 classes at the capped size: the defender's stratified clean share still holds ~1 per class."""
    import torch

    from beniful.case import defender_split
    from beniful.datasets import ImageDataset

    smoke = profiles.get("smoke")
    y = torch.arange(10 * 200) % 200
    full = ImageDataset(torch.zeros(len(y), 3, 2, 2, dtype=torch.uint8), y)
    train, _ = smoke.subset_data("tiny-imagenet", full, full)
    assert len(train) == smoke.data_sizes["tiny-imagenet"]["train"]
    assert train.targets.bincount(minlength=200).min() == train.targets.bincount().max()  # stratified
    clean = defender_split(train, smoke.clean_fraction, 0)
    assert len(torch.unique(clean.targets)) == 200


def test_subset_data_cuts_stratified_once_and_keys_by_content():
    import torch

    from beniful.datasets import ImageDataset
    from beniful.zoo import data_fingerprint

    g = torch.Generator().manual_seed(0)
    y = torch.arange(1000) % 10
    x = torch.randint(0, 256, (1000, 3, 4, 4), generator=g, dtype=torch.uint8)
    train = ImageDataset(x, y, source="cifar10/train")
    test = ImageDataset(x[:300], y[:300], source="cifar10/test")
    smoke = profiles.get("smoke")
    tr, te = smoke.subset_data("cifar10", train, test)
    caps = smoke.data_sizes["cifar10"]
    assert (len(tr), len(te)) == (caps["train"], caps["test"])
    assert tr.targets.bincount().tolist() == [caps["train"] // 10] * 10
    assert tr.source == "" and data_fingerprint(tr, te, "cifar10") is not None  # keyed by content
    again = smoke.subset_data("cifar10", tr, te)  # already cut: unchanged
    assert again[0] is tr and again[1] is te
    tr2, te2 = smoke.subset_data("cifar10", train, test)  # the same draw every time: the same key
    assert data_fingerprint(tr2, te2, "cifar10") == data_fingerprint(tr, te, "cifar10")
    # a profile without caps, or a data set it does not cap, keeps everything
    assert profiles.get("paper").subset_data("cifar10", train, test) == (train, test)
    assert smoke.subset_data("other", train, test) == (train, test)


@pytest.mark.parametrize("sizes, match", [({"cifar10": {"val": 3}}, "unknown split"),
                                          ({"cifar10": {"train": 0}}, "positive integer")])
def test_data_sizes_are_validated(sizes, match):
    from beniful.training import TrainConfig

    with pytest.raises(ValueError, match=match):
        profiles.Profile(name="x", description="", width=2, train=TrainConfig(), data_sizes=sizes)
