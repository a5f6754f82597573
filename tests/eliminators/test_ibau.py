"""I-BAU: hypergradient algebra, the universal perturbation, unlearning the learned backdoor."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from beniful import eliminators
from beniful.eliminators.ibau import IBAU, find_perturbation, implicit_hypergradient, project_l2


def test_ibau_is_registered():
    assert isinstance(eliminators.build("ibau"), IBAU)


def test_project_l2():
    d = torch.full((1, 1, 2, 2), 3.0)
    assert math.isclose(float(project_l2(d, 1.0).norm()), 1.0, rel_tol=1e-5)
    assert torch.equal(project_l2(d, 100.0), d)


def test_default_bound_scales_with_image_size():
    el = IBAU()
    assert math.isclose(el.bound_for((3, 32, 32)), 10.0)
    assert math.isclose(el.bound_for((1, 28, 28)), 10.0 * math.sqrt(784 / 3072))
    assert IBAU(norm_bound=2.5).bound_for((3, 32, 32)) == 2.5


def test_perturbation_is_bounded_and_carries_the_backdoor(baseline_poisoned, baseline_data):
    d = baseline_data
    delta = find_perturbation(baseline_poisoned, d.clean[0], 100, 10.0, 1e-3, 2.0, torch.device("cpu"))
    assert delta.shape == (1,) + tuple(d.clean[0].shape[1:])
    assert float(delta.norm()) <= 2.0 + 1e-4
    with torch.no_grad():
        pred = baseline_poisoned(d.x_test + delta).argmax(1)
    assert float((pred == d.target).float().mean()) > 0.5  # the universal perturbation finds the backdoor class


def test_hypergradient_with_k0_is_the_direct_gradient():
    """K=0 truncates the Neumann series after its first term: v = dH/ddelta, plus the indirect term."""
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    delta = torch.zeros(1, 3)
    flag = torch.ones(5)
    params = list(lin.parameters())
    g = implicit_hypergradient(lin, params, delta, x, y, flag, 0.1, 0.0, 0)
    # closed form of the indirect part: Phi = delta - a * grad_delta(-CE),
    # so (dPhi/dtheta)^T v = a * d/dtheta <grad_delta CE, v>
    d = delta.clone().requires_grad_(True)
    ce = nn.functional.cross_entropy(lin(x + d), y)
    direct = torch.autograd.grad(ce, params, retain_graph=True)
    (gd,) = torch.autograd.grad(ce, d, create_graph=True)
    v = gd.detach()
    indirect = torch.autograd.grad((gd * v).sum() * 0.1, params)
    for a, b, c in zip(g, direct, indirect):
        torch.testing.assert_close(a, b + c, atol=1e-5, rtol=1e-4)


def test_cg_and_fixed_point_agree_on_a_contractive_problem():
    """On a strongly curved inner problem the Neumann series converges to the CG solution."""
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    params = list(lin.parameters())
    a = implicit_hypergradient(lin, params, torch.zeros(1, 3), x, y, torch.ones(8), 0.5, 1.0, 60, "fixed_point")
    b = implicit_hypergradient(lin, params, torch.zeros(1, 3), x, y, torch.ones(8), 0.5, 1.0, 10, "cg")
    for u, w in zip(a, b):
        torch.testing.assert_close(u, w, atol=1e-4, rtol=1e-3)


def test_ibau_reduces_the_planted_asr(baseline_poisoned, baseline_data):
    d = baseline_data
    before = {k: v.clone() for k, v in baseline_poisoned.state_dict().items()}
    asr0 = d.asr(baseline_poisoned, d.x_test, d.y_test)
    el = IBAU(rounds=3, min_steps=6, lr=1e-3, device="cpu")  # a few steps suffice on the tiny net
    fixed = el.repair(baseline_poisoned, d.clean)
    assert fixed is not baseline_poisoned
    assert all(torch.equal(v, before[k]) for k, v in baseline_poisoned.state_dict().items())
    assert el.perturbation is not None and float(el.perturbation.norm()) <= el.bound_for((1, 12, 12)) + 1e-4
    assert d.asr(fixed, d.x_test, d.y_test) < asr0 - 0.3
    assert d.accuracy(fixed, d.x_test, d.y_test) > 0.6


@pytest.mark.parametrize("kw", [{"rounds": -1}, {"K": -1}, {"lr": 0}, {"norm_bound": 0}, {"pert_lr": 0},
                                {"inner_lr": -1}, {"reg": -1}, {"perturbed_share": 0}, {"solver": "newton"},
                                {"min_steps": 0},
                                {"min_steps": -1}])
def test_ibau_rejects_bad_parameters(kw):
    with pytest.raises(ValueError):
        IBAU(**kw)


def test_passes_per_round_scale_with_the_clean_set():
    el = IBAU(batch_size=100, min_steps=10)
    assert el.passes_for(200) == 5 and el.passes_for(120) == 5 and el.passes_for(5000) == 1
