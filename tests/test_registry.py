import inspect

import pytest
import torch

from beniful import attacks, detectors, eliminators, models
from beniful.registry import Configurable, Registry, constructor_parameters


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


# ------------------------------------------------------------------------------------------ spelling


def test_dash_and_underscore_are_one_name_in_both_directions():
    reg = Registry("widget")
    reg.register("tiny-imagenet")("t")
    reg.register("scale_up")("s")
    assert reg.get("tiny_imagenet") == reg.get("Tiny-ImageNet") == "t"
    assert reg.get("scale-up") == reg.get("SCALE_UP") == "s"
    # the registered spelling is what is listed and what canonical() gives back
    assert reg.available() == ["scale_up", "tiny-imagenet"]
    assert reg.canonical("tiny_imagenet") == "tiny-imagenet" and reg.canonical("scale-up") == "scale_up"
    assert "tiny_imagenet" in reg and "scale-up" in reg


def test_duplicate_in_another_spelling_is_rejected():
    reg = Registry("widget")
    reg.add("fashion-mnist", 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("fashion_mnist", 2)
    assert reg.get("fashion-mnist") == 1


def test_unregister_removes_and_unknown_unregister_raises():
    reg = Registry("widget")
    reg.add("a-b", 1)
    assert reg.unregister("a_b") == 1
    assert "a-b" not in reg and reg.available() == []
    with pytest.raises(ValueError, match="unknown widget"):
        reg.unregister("a-b")


def test_empty_or_non_string_names_are_refused_at_registration():
    reg = Registry("widget")
    for bad in ("", None, 3):
        with pytest.raises(TypeError):
            reg.add(bad, 1)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ defaults / params


class _Base(Configurable):
    params_exclude = frozenset({"device"})

    def __init__(self, lr: float = 0.1, device: str = "cpu") -> None:
        self.lr, self.device_name = lr, device


class _Child(_Base):
    def __init__(self, width: int = 4, **kwargs) -> None:
        super().__init__(**kwargs)
        self.width = width


class _Explicit(_Base):
    """Spells out its parameters (no **kwargs): the walk stops here, the base's lr is not inherited."""

    def __init__(self, depth: int = 2, device: str = "cpu") -> None:
        super().__init__(device=device)
        self.depth = depth


def test_signature_walk_follows_kwargs_only():
    assert list(constructor_parameters(_Child)) == ["width", "lr", "device"]
    assert list(constructor_parameters(_Explicit)) == ["depth", "device"]
    assert _Child(width=8, lr=0.5).params() == {"width": 8, "lr": 0.5}
    assert _Explicit(depth=3).params() == {"depth": 3}


def test_defaults_of_classes_and_functions():
    reg = Registry("widget")
    reg.add("child", _Child)
    reg.add("fn", lambda a, b=2, *args, c=3, **kw: None)
    assert reg.defaults("child") == {"width": 4, "lr": 0.1, "device": "cpu"}
    assert reg.defaults("fn") == {"b": 2, "c": 3}


def test_a_parameter_neither_stored_nor_excluded_is_named():
    class Forgetful(_Base):
        def __init__(self, momentum: float = 0.9, **kwargs) -> None:
            super().__init__(**kwargs)

    with pytest.raises(AttributeError, match="'momentum'.*self.momentum"):
        Forgetful().params()


def test_a_params_override_still_wins():
    class Hashed(_Child):
        def params(self):
            return {**super().params(), "digest": "abc"}

    assert Hashed(width=2).params() == {"width": 2, "lr": 0.1, "digest": "abc"}


def test_stored_dicts_are_copied_out():
    class WithDict(Configurable):
        def __init__(self, opts: dict | None = None) -> None:
            self.opts = dict(opts or {})

    w = WithDict({"a": 1})
    w.params()["opts"]["a"] = 2
    assert w.opts == {"a": 1}


# ------------------------------------------------------------------------------------------ every method

METHODS = [(mod, name) for mod in (attacks, detectors, eliminators) for name in mod.available()]
IDS = [f"{mod.__name__.split('.')[-1]}:{name}" for mod, name in METHODS]
#: a non-default value for some parameters of each kind, to round-trip more than the defaults
NON_DEFAULT = {
    ("attacks", "badnets"): {"patch_size": 5, "position": "top_left", "target": 3},
    ("attacks", "wanet"): {"k": 6, "s": 1.5},
    ("attacks", "iad"): {"gen_width": 4, "mask_epochs": 2},
    ("detectors", "strip"): {"n_overlays": 7, "fpr": 0.1, "batch_size": 16},
    ("detectors", "scale_up"): {"scales": [2, 4], "normalize": "class"},
    ("detectors", "teco"): {"corruptions": ["gaussian_noise", "brightness"]},
    ("detectors", "beniful"): {"layer": "layer2", "vae_lr": 1e-3, "calib_fraction": 0.5, "cache": True},
    ("eliminators", "beniful"): {"lam": 2.0, "detector_kwargs": {"vae_epochs": 3}, "epochs": 5},
    ("eliminators", "nad"): {"layers": ["layer3"], "betas": [10], "teacher_epochs": 1},
    ("eliminators", "ibau"): {"rounds": 2, "norm_bound": 3.0},
    ("eliminators", "anp"): {"iterations": 10, "threshold": 0.5},
}


def _registry(mod):
    return {attacks: attacks.ATTACKS, detectors: detectors.DETECTORS, eliminators: eliminators.ELIMINATORS}[mod]


def _expected_keys(cls) -> list[str]:
    """Written out independently of the package: most derived __init__ first, a base only through
    **kwargs, minus the class's declared exclusions."""
    keys: list[str] = []
    for klass in inspect.getmro(cls):
        if klass is object or "__init__" not in vars(klass):
            continue
        ps = list(inspect.signature(klass.__init__).parameters.values())[1:]
        keys += [p.name for p in ps if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in keys]
        if not any(p.kind is p.VAR_KEYWORD for p in ps):
            break
    return [k for k in keys if k not in cls.params_exclude]


@pytest.mark.parametrize("mod,name", METHODS, ids=IDS)
def test_params_are_the_constructor_parameters_minus_exclusions(mod, name):
    reg = _registry(mod)
    obj = mod.build(name)
    assert list(obj.params()) == _expected_keys(reg.get(name))
    # what no result table should record, and what every one must
    assert not {"device", "progress", "seed", "detector", "cache", "pattern", "kwargs"} & set(obj.params())
    if mod is detectors:
        assert {"fpr", "calib_fraction", "batch_size"} <= set(obj.params())
    if mod is attacks:
        assert {"target", "rate", "seed"} & set(obj.params()) == set()
        assert {"target", "rate", "seed"} <= set(obj.config())


@pytest.mark.parametrize("mod,name", METHODS, ids=IDS)
def test_build_from_params_round_trips(mod, name):
    kw = NON_DEFAULT.get((mod.__name__.split(".")[-1], name), {})
    for obj in (mod.build(name), mod.build(name, **kw)):
        again = mod.build(name, **obj.params())
        assert again.params() == obj.params()
        assert type(again) is type(obj)
    if kw:
        assert mod.build(name, **kw).params() != mod.build(name).params()


@pytest.mark.parametrize("mod,name", METHODS, ids=IDS)
def test_defaults_helper_agrees_with_a_fresh_object(mod, name):
    reg = _registry(mod)
    defaults, params = reg.defaults(name), mod.build(name).params()
    assert set(params) <= set(defaults)
    for k, v in params.items():
        assert defaults[k] == v, (name, k, defaults[k], v)
    # the excluded run-time parameters are still listed (the book's table can show or skip them)
    assert set(defaults) - set(params) <= set(reg.get(name).params_exclude)


def test_iad_version_stays_in_the_cache_key_but_not_in_params():
    iad = attacks.build("iad")
    assert "version" not in iad.params()
    assert iad.config()["version"] == type(iad).VERSION
    assert "version" not in attacks.build("badnets").config()


def test_blended_user_pattern_is_recorded_by_its_override():
    plain = attacks.build("blended")
    assert plain.params() == {"alpha": 0.2, "pattern_seed": 1234}
    a = attacks.build("blended", pattern=torch.zeros(1, 4, 4))
    b = attacks.build("blended", pattern=torch.ones(1, 4, 4))
    assert a.params() != b.params() and a.params() != plain.params()
    assert not any(isinstance(v, torch.Tensor) for v in a.params().values())


def test_detector_params_are_json_for_cache_keys():
    from beniful import cache

    for mod, name in METHODS:
        cache.config_key({"params": mod.build(name).params()})  # raises on a non-JSON value
