"""NAD: attention maps and loss, distillation end to end, bad values rejected."""
from __future__ import annotations

import copy

import pytest
import torch

from beniful import eliminators
from beniful.eliminators.nad import NAD, attention_loss, attention_map

#: the planted cases' classes are orientations (conftest.NO_FLIP): no flips, as on digits
NO_FLIP = {"hflip": False}


def test_nad_is_registered():
    assert isinstance(eliminators.build("nad"), NAD)


def test_attention_map_is_normalised_sum_of_powers():
    f = torch.randn(3, 5, 4, 4)
    a = attention_map(f, p=2)
    assert a.shape == (3, 16)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(3), atol=1e-4, rtol=0)
    raw = f.pow(2).sum(1).flatten(1)
    torch.testing.assert_close(a, raw / raw.norm(dim=1, keepdim=True), atol=1e-5, rtol=0)
    # scale-invariant: only where the network attends matters, not how strongly
    torch.testing.assert_close(attention_map(3 * f), a, atol=1e-5, rtol=0)


def test_attention_loss_is_zero_for_identical_teacher_and_student(baseline_poisoned, baseline_data):
    x = baseline_data.x_test[:32]
    teacher = copy.deepcopy(baseline_poisoned)
    fs, ft = [], []
    h1 = baseline_poisoned.stage2.register_forward_hook(lambda _m, _i, o: fs.append(o))
    h2 = teacher.stage2.register_forward_hook(lambda _m, _i, o: ft.append(o))
    with torch.no_grad():
        baseline_poisoned(x)
        teacher(x)
    h1.remove()
    h2.remove()
    assert float(attention_loss(fs[0], ft[0])) == 0.0
    assert float(attention_loss(fs[0], torch.roll(ft[0], 1, dims=-1))) > 0


def test_attention_loss_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        attention_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 2, 2))


def test_nad_repairs_a_copy_and_weakens_the_backdoor(baseline_poisoned, baseline_data):
    d = baseline_data
    before = {k: v.clone() for k, v in baseline_poisoned.state_dict().items()}
    el = NAD(layers=("stage1", "stage2"), betas=(1000, 1000), teacher_epochs=20, epochs=20, device="cpu", **NO_FLIP)
    fixed = el.repair(baseline_poisoned, d.clean)
    assert fixed is not baseline_poisoned
    assert all(torch.equal(v, before[k]) for k, v in baseline_poisoned.state_dict().items())
    assert not fixed.stage1._forward_hooks and not fixed.stage2._forward_hooks
    assert d.asr(fixed, d.x_test, d.y_test) < d.asr(baseline_poisoned, d.x_test, d.y_test) - 0.4
    assert d.accuracy(fixed, d.x_test, d.y_test) > 0.9


def test_nad_unknown_layer(baseline_poisoned, baseline_data):
    with pytest.raises(ValueError, match="unknown layer"):
        NAD(layers=("stage9",), betas=(1.0,), device="cpu").repair(baseline_poisoned, baseline_data.clean)


@pytest.mark.parametrize("kw", [{"betas": (1.0, 2.0)}, {"betas": (-1.0, 1.0, 1.0)}, {"p": 0}, {"layers": ()},
                                {"teacher_epochs": -1}, {"lr": -0.1}])
def test_nad_rejects_bad_parameters(kw):
    with pytest.raises(ValueError):
        NAD(**kw)
