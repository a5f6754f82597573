"""beniful.equal_budget: every fine-tuning defense gets BeniFul-BE's number of optimisation steps."""
from __future__ import annotations

import pytest

from beniful import eliminators, method_defaults
from beniful.equal_budget import FINE_TUNING_DEFENSES, equal_budget, equal_budget_table, reference_steps


def _steps(name: str, n: int, kw: dict) -> int:
    return eliminators.build(name, **method_defaults.merged("eliminators", name, "mnist5k", kw)).optimisation_steps(n)


def test_reference_is_benifuls_defaults() -> None:
    steps, bs = reference_steps(200, "mnist5k")
    assert (steps, bs) == (40 * 4, 64)  # 40 epochs of 4 steps (3 full batches of 64 and one of 8)


@pytest.mark.parametrize("n", [200, 121, 1000])
def test_every_fine_tuning_defense_gets_the_same_steps(n: int) -> None:
    over = equal_budget(n, dataset="mnist5k")
    assert list(over) == list(FINE_TUNING_DEFENSES)
    ref, _ = reference_steps(n, "mnist5k")
    assert all(_steps(name, n, kw) == ref for name, kw in over.items())
    # NAD's teacher and student share the budget in the ratio of its own 10 : 20 epochs
    assert over["nad"] == {"teacher_epochs": 13, "epochs": 27}
    assert over["ft"] == {"epochs": 40} and over["ft_pool"] == {}  # ft_pool has BeniFul-BE's defaults


def test_a_reference_setting_and_a_case_are_followed(tiny_badnets_tm) -> None:
    assert equal_budget(200, ["ft"], "mnist5k", epochs=20, batch_size=32) == {"ft": {"epochs": 20, "batch_size": 32}}
    n = len(tiny_badnets_tm.clean.tensors()[1])
    assert equal_budget(tiny_badnets_tm) == equal_budget(n, dataset=tiny_badnets_tm.dataset)


def test_table_shows_equal_steps_beside_the_own_settings() -> None:
    tab = equal_budget_table(200, dataset="mnist5k")
    assert (tab.steps == tab.reference_steps).all()
    own = tab.set_index("method").own_steps
    assert own["ft"] == 100 * 4 and own["nad"] == 30 * 4


def test_methods_that_do_not_fine_tune_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="anp"):
        equal_budget(200, ["ft", "anp"])
    with pytest.raises(ValueError, match="number of clean images"):
        equal_budget(1)
