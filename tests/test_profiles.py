import pytest

from beniful import profiles
from beniful.zoo import model_config


def test_profiles_listed_and_unknown_rejected():
    assert profiles.available() == ["paper", "quick"]
    with pytest.raises(ValueError, match="valid profiles: paper, quick"):
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
        assert profiles.available() == ["paper", "quick", "smoke-test"]
        with pytest.raises(ValueError, match="registered twice"):
            profiles.register(profiles.Profile(name="smoke_test", description="", width=2, train=TrainConfig()))
    finally:
        profiles.PROFILES.unregister("smoke-test")
    assert profiles.available() == ["paper", "quick"]
    with pytest.raises(ValueError, match="registered twice"):
        profiles.register(profiles.get("quick"))
    with pytest.raises(TypeError, match="takes a Profile"):
        profiles.register("quick")  # type: ignore[arg-type]


def test_a_profile_object_is_returned_as_is():
    q = profiles.get("quick")
    assert profiles.get(q) is q
