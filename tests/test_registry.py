import pytest

from beniful import attacks, detectors, eliminators, models
from beniful.registry import Registry


def test_unknown_name_lists_valid_names():
    reg = Registry("widget")
    reg.register("alpha")(dict)
    reg.register("beta")(dict)
    with pytest.raises(ValueError, match=r"unknown widget 'gamma'; valid names: alpha, beta"):
        reg.build("gamma")


def test_duplicate_registration_rejected():
    reg = Registry("widget")
    reg.register("a")(dict)
    with pytest.raises(ValueError, match="twice"):
        reg.register("A")(dict)


def test_names_are_case_and_dash_insensitive():
    reg = Registry("widget")
    reg.register("scale_up")(lambda: "ok")
    assert reg.build("SCALE-UP") == "ok"
    assert "scale-up" in reg and "nope" not in reg and 3 not in reg


def test_non_string_name_is_a_type_error():
    with pytest.raises(TypeError):
        Registry("widget").get(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("mod", [attacks, detectors, eliminators, models])
def test_every_public_registry_lists_and_rejects(mod):
    names = mod.available()
    assert names == sorted(names)
    with pytest.raises(ValueError, match="valid names"):
        mod.build("no-such-thing")


def test_headline_attacks_registered():
    assert {"badnets", "blended", "sig", "wanet"} <= set(attacks.available())
