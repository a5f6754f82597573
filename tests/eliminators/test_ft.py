"""FT: a new model, the argument untouched, the backdoor learned from data weakened, bad values rejected."""
from __future__ import annotations

import pytest
import torch

from beniful import eliminators
from beniful.eliminators.ft import FineTuning

#: the planted cases' classes are orientations (conftest.NO_FLIP): no flips, as on digits
NO_FLIP = {"hflip": False}


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_ft_is_registered():
    assert isinstance(eliminators.build("ft"), FineTuning)


def test_ft_returns_new_model_and_leaves_argument_untouched(baseline_poisoned, baseline_data):
    before = _state(baseline_poisoned)
    el = FineTuning(epochs=3, device="cpu", **NO_FLIP)
    fixed = el.repair(baseline_poisoned, baseline_data.clean)
    assert fixed is not baseline_poisoned
    for k, v in baseline_poisoned.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in fixed.state_dict().items() if v.is_floating_point())
    assert el.wall_seconds > 0 and not fixed.training


def test_ft_weakens_a_learned_backdoor_and_keeps_accuracy(baseline_poisoned, baseline_data):
    d = baseline_data
    assert d.asr(baseline_poisoned, d.x_test, d.y_test) > 0.9
    fixed = FineTuning(epochs=20, device="cpu", **NO_FLIP).repair(baseline_poisoned, d.clean)
    assert d.asr(fixed, d.x_test, d.y_test) < 0.6
    assert d.accuracy(fixed, d.x_test, d.y_test) > 0.9


def test_ft_is_deterministic_in_seed(baseline_poisoned, baseline_data):
    a = FineTuning(epochs=2, device="cpu", seed=3, **NO_FLIP).repair(baseline_poisoned, baseline_data.clean)
    b = FineTuning(epochs=2, device="cpu", seed=3, **NO_FLIP).repair(baseline_poisoned, baseline_data.clean)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("kw", [{"epochs": -1}, {"epochs": 1.5}, {"lr": 0}, {"batch_size": 0}, {"momentum": 1.0},
                                {"weight_decay": -1}, {"crop_padding": -2}])
def test_ft_rejects_bad_parameters(kw):
    with pytest.raises(ValueError):
        FineTuning(**kw)


@pytest.mark.parametrize("threads", [1, 2])
def test_repair_hands_back_the_contiguous_layout_on_any_thread_count(baseline_poisoned, baseline_data, threads):
    """One CPU thread repairs an NHWC copy (faster); more threads keep NCHW (NHWC crashed BeniFul-BE's
    backward there). Either way the caller gets a contiguous model and its own stays untouched."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fixed = FineTuning(epochs=1, device="cpu", **NO_FLIP).repair(baseline_poisoned, baseline_data.clean)
    finally:
        torch.set_num_threads(old)
    assert all(p.is_contiguous() for p in fixed.parameters())
    assert all(p.is_contiguous() for p in baseline_poisoned.parameters())
