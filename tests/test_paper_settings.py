"""beniful.paper_settings: the baselines' published settings, their sources and the one scaling rule."""
from __future__ import annotations

import inspect

import pytest

from beniful import eliminators
from beniful.paper_settings import PAPER_METHODS, PAPER_SETTINGS, paper_budget, paper_kwargs


def test_every_setting_names_a_real_parameter_and_a_source() -> None:
    for s in PAPER_SETTINGS:
        params = inspect.signature(eliminators.ELIMINATORS.get(s.method).__init__).parameters
        assert s.param in params, (s.method, s.param)
        assert len(s.source) > 20
    assert PAPER_METHODS == ("ft", "fp", "nad", "anp", "ibau")


def test_only_iteration_counts_scale_with_the_clean_data() -> None:
    assert paper_kwargs("anp", 500)["iterations"] == 2000  # the paper's own size
    assert paper_kwargs("anp", 200)["iterations"] == 800  # the same 512 passes over 200 images
    assert paper_kwargs("anp", 200)["threshold"] == 0.2 and paper_kwargs("ibau", 200)["perturbed_share"] == 0.01
    assert paper_kwargs("ft", 200) == paper_kwargs("ft", 5000) == {"epochs": 100}
    assert paper_kwargs("nad", 200) == {"teacher_epochs": 10, "epochs": 20}
    assert [s.rule() for s in PAPER_SETTINGS if s.paper_images] == ["x n_clean / 500"]


def test_the_settings_build_their_eliminators() -> None:
    for name, kw in paper_budget(200).items():
        el = eliminators.build(name, **kw)
        assert all(getattr(el, k) == v for k, v in kw.items())


def test_unknown_method_and_bad_size_are_refused() -> None:
    with pytest.raises(ValueError, match="beniful"):
        paper_kwargs("beniful", 200)
    with pytest.raises(ValueError, match="positive integer"):
        paper_kwargs("anp", 0)
