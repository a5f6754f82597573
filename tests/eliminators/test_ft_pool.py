"""ft_pool: fine-tuning plus self-distillation on the incoming pool, with BeniFul-BE's optimiser and defaults."""
from __future__ import annotations

import inspect

import pytest
import torch

from beniful import eliminators
from beniful.eliminators.beniful import BeniFulEliminator
from beniful.eliminators.ft_pool import SHARED_WITH_BENIFUL, FineTuningPool

FAST = {"epochs": 3, "device": "cpu"}


def _same(a, b) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_ft_pool_is_registered_and_uses_the_pool() -> None:
    el = eliminators.build("ft_pool")
    assert isinstance(el, FineTuningPool) and el.uses_pool
    assert not eliminators.build("ft").uses_pool and eliminators.build("beniful").uses_pool


def test_ft_pool_defaults_are_benifuls() -> None:
    be = {k: p.default for k, p in inspect.signature(BeniFulEliminator.__init__).parameters.items()}
    own = {k: p.default for k, p in inspect.signature(FineTuningPool.__init__).parameters.items()}
    assert all(own[k] == be[k] for k in SHARED_WITH_BENIFUL)
    assert FineTuningPool().params() == {k: be[k] for k in SHARED_WITH_BENIFUL}


def test_ft_pool_reads_the_pool_and_only_through_keep(baseline_poisoned, baseline_data) -> None:
    d = baseline_data
    pool_a, pool_b = d.x_test[:100], d.trigger(d.x_test[100:200])
    a = FineTuningPool(**FAST).repair(baseline_poisoned, d.clean, pool=pool_a)
    b = FineTuningPool(**FAST).repair(baseline_poisoned, d.clean, pool=pool_b)
    assert not _same(a, b)
    # with keep=0 the pool is never read: any pool gives the same weights
    a0 = FineTuningPool(keep=0.0, **FAST).repair(baseline_poisoned, d.clean, pool=pool_a)
    b0 = FineTuningPool(keep=0.0, **FAST).repair(baseline_poisoned, d.clean, pool=pool_b)
    assert _same(a0, b0)


def test_ft_pool_pseudo_labels_are_the_original_models(baseline_poisoned, baseline_data) -> None:
    d = baseline_data
    pool = d.trigger(d.x_test[:50])  # triggered inputs: the original model sends them to the target
    el = FineTuningPool(**FAST)
    el.device = torch.device("cpu")
    with torch.no_grad():
        want = baseline_poisoned(pool).argmax(1)
    assert torch.equal(el.pseudo_labels(baseline_poisoned, pool), want)
    el.repair(baseline_poisoned, d.clean, pool=pool)
    assert el.n_pool_used == 50


def test_ft_pool_is_deterministic_in_seed(baseline_poisoned, baseline_data) -> None:
    d = baseline_data
    pool = d.x_test[:80]
    a = FineTuningPool(seed=4, **FAST).repair(baseline_poisoned, d.clean, pool=pool)
    b = FineTuningPool(seed=4, **FAST).repair(baseline_poisoned, d.clean, pool=pool)
    c = FineTuningPool(seed=5, **FAST).repair(baseline_poisoned, d.clean, pool=pool)
    assert _same(a, b) and not _same(a, c)


def test_ft_pool_without_a_pool_warns_and_fine_tunes(baseline_poisoned, baseline_data) -> None:
    with pytest.warns(UserWarning, match="no pool"):
        fixed = FineTuningPool(**FAST).repair(baseline_poisoned, baseline_data.clean)
    assert not _same(fixed, baseline_poisoned)


@pytest.mark.parametrize("kw", [{"keep": -1}, {"momentum": 1.0}, {"crop_padding": -1}, {"epochs": -1}])
def test_ft_pool_rejects_bad_parameters(kw) -> None:
    with pytest.raises(ValueError):
        FineTuningPool(**kw)
