"""beniful.method_defaults: per-family settings reach every method built by name, and only there."""
from __future__ import annotations

import pytest

from beniful import datasets, evaluation, method_defaults
from beniful import eliminators as eliminators_mod
from beniful.notebook import params
from beniful.notebook.run import registry


def test_digits_never_flip_and_natural_images_keep_the_paper_settings() -> None:
    assert method_defaults.for_method("eliminators", "ft", "mnist5k") == {"hflip": False}
    # BeniFul-BE's own defaults (chosen on validation splits of digits and Fashion-MNIST) never flip
    assert method_defaults.for_method("eliminators", "beniful", "mnist5k") == {}
    assert registry("eliminators").defaults("beniful")["hflip"] is False
    for natural in ("cifar10", "tiny-imagenet"):
        assert method_defaults.for_method("eliminators", "ft", natural) == {}
    # constructor defaults are the natural-image (paper) settings
    for name in ("ft", "fp", "nad", "anp"):
        kw = registry("eliminators").defaults(name)
        assert kw["hflip"] is True and kw["crop_padding"] == 4, name
    # a user's own data set (not registered) gets the constructor defaults
    assert method_defaults.for_method("eliminators", "ft", "my-data") == {}
    assert method_defaults.for_method("eliminators", "ft", None) == {}


def test_every_setting_names_a_real_parameter_and_changes_it() -> None:
    for family, settings in method_defaults.FAMILIES.items():
        for s in settings:
            defaults = registry(s.kind).defaults(s.method)
            assert s.param in defaults, f"{family}: {s.method} has no parameter {s.param}"
            assert defaults[s.param] != s.value, f"{family}: {s.method}.{s.param} repeats the default"
            assert s.source
    table = params.family_table()
    assert len(table) == sum(len(v) for v in method_defaults.FAMILIES.values())
    assert set(table.columns) >= {"family", "method", "param", "value", "default", "source"}


def test_bad_names_are_refused_with_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid kinds: attacks, detectors, eliminators"):
        method_defaults.for_method("defenses", "ft", "mnist5k")
    with pytest.raises(ValueError, match="valid families: natural, digits"):
        datasets.DatasetSpec("x", 10, (1, 8, 8), lambda root: None, family="sketches")


def test_a_row_built_by_name_gets_the_family_settings_under_the_callers(monkeypatch, tiny_badnets_tm) -> None:
    seen: list[dict] = []
    real = eliminators_mod.build

    def spy(name, **kw):
        seen.append(kw)
        return real(name, **kw)

    monkeypatch.setattr(eliminators_mod, "build", spy)
    evaluation.elimination_row(tiny_badnets_tm, "ft", epochs=0, use_cache=False)
    evaluation.elimination_row(tiny_badnets_tm, "ft", epochs=0, hflip=True, use_cache=False)
    assert tiny_badnets_tm.dataset == "mnist5k"
    assert seen[0]["hflip"] is False and seen[1]["hflip"] is True
