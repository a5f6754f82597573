"""FT: a new model, the argument untouched, the backdoor learned from data weakened, bad values rejected."""
from __future__ import annotations

import math

import pytest
import torch

from beniful import eliminators
from beniful.eliminators.ft import FineTuning, cosine_sgd

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



def test_cosine_sgd_anneals_per_step_and_skips_single_item_batches(monkeypatch):
    """The shared loop of every fine-tuning defense: step k runs at lr * (1 + cos(pi k / total)) / 2,
    a last batch of one item is never a step, and the loop ends in eval mode with moved weights."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    x = torch.randn(9, 2)
    sizes: list[int] = []
    lrs: list[float] = []
    step = torch.optim.SGD.step

    def spy(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)

    def batch_loss(idx):
        sizes.append(len(idx))
        return ((model(x[idx]) - 1) ** 2).mean()

    before = model.weight.detach().clone()
    # 9 items at batch 4: batches of 4, 4 and 1 (skipped) -> 2 steps an epoch, 6 in 3 epochs; the
    # schedule's total counts ceil(9 / 4) = 3 batches an epoch, 9 in all
    out = cosine_sgd(model, 9, batch_loss, epochs=3, lr=0.1, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert out is model and not model.training
    assert sizes == [4, 4] * 3
    assert lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * k / 9)) for k in range(6)])
    assert not torch.equal(before, model.weight.detach())


def test_cosine_sgd_with_no_epochs_or_one_item_leaves_the_model_alone():
    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    calls = []

    def batch_loss(idx):
        calls.append(idx)
        return model(torch.ones(1, 2)).sum()

    for epochs, n in ((0, 10), (3, 1)):
        cosine_sgd(model, n, batch_loss, epochs=epochs, lr=0.1, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert calls == [] and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
