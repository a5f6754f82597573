"""ANP: the mask optimisation singles out the planted backdoor neuron; BN-less models are refused."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from beniful import eliminators
from beniful.eliminators.anp import ANP, bn_layers

#: the planted cases' classes are orientations (conftest.NO_FLIP): no flips, as on digits
NO_FLIP = {"hflip": False}


def test_anp_is_registered():
    assert isinstance(eliminators.build("anp"), ANP)


def test_anp_mask_finds_the_planted_neuron(baseline_planted, baseline_data, baseline_clean_model):
    d, m, unit = baseline_data, baseline_planted.model, baseline_planted.unit
    before = {k: v.clone() for k, v in m.state_dict().items()}
    el = ANP(iterations=60, batch_size=32, device="cpu", **NO_FLIP)
    fixed = el.repair(m, d.clean)
    mask = el.masks["stage1.1"]
    assert mask.shape == (unit + 1,)
    assert int(mask.argmin()) == unit and mask[unit] < el.threshold
    assert ("stage1.1", unit) in el.pruned
    assert len(el.pruned) <= 3  # the benign neurons survive
    assert float(fixed.stage1[1].weight[unit].detach()) == 0.0
    assert d.asr(fixed, d.x_test, d.y_test) <= d.asr(baseline_clean_model, d.x_test, d.y_test) + 0.05
    assert d.accuracy(fixed, d.x_test, d.y_test) > 0.9
    # the argument is untouched and carries no hooks
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert all(not mod._forward_hooks for mod in m.modules())
    assert all(not mod._forward_hooks for mod in fixed.modules())


def test_anp_without_perturbation_keeps_the_dormant_neuron(baseline_planted, baseline_data):
    """With eps=0 only the clean loss acts, and a dormant neuron gets no gradient: the perturbation is the point."""
    el = ANP(eps=0.0, iterations=30, batch_size=32, device="cpu", **NO_FLIP)
    el.repair(baseline_planted.model, baseline_data.clean)
    assert float(el.masks["stage1.1"][baseline_planted.unit]) == 1.0


def test_anp_needs_batchnorm(baseline_data):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="BatchNorm"):
        ANP(iterations=1, device="cpu").repair(net, baseline_data.clean)
    with pytest.raises(ValueError, match="BatchNorm"):
        bn_layers(nn.Sequential(nn.BatchNorm2d(3, affine=False)))


@pytest.mark.parametrize("kw", [{"eps": -0.1}, {"steps": 0}, {"alpha": 1.5}, {"threshold": -0.1}, {"iterations": -1},
                                {"lr": 0}, {"batch_size": 0}])
def test_anp_rejects_bad_parameters(kw):
    with pytest.raises(ValueError):
        ANP(**kw)
