"""IBD-PSC (Hou et al., 2024): confidence of triggered inputs survives BN-parameter amplification."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from baseline_planted import planted
from beniful import detectors
from beniful.detectors.ibd_psc import IBDPSC, amplified_copy, bn_layers
from beniful.metrics import auroc


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_psc_is_higher_for_triggered_inputs():
    # On the shallow toy the effect is clear for the grayscale model; the RGB toy is used for the
    # structural checks below (its amplified copies keep ~100% clean accuracy, see the module notes).
    p = planted(1)
    det = detectors.build("ibd_psc", n=3).fit(p["model"], p["clean"])
    s_clean, s_trig = det.score(p["test"]), det.score(p["trig"])
    assert s_clean.shape == (len(p["test"]),) and torch.isfinite(s_clean).all()
    assert auroc(s_clean, s_trig) > 0.9
    assert float(s_trig.median()) > float(s_clean.median())
    psc_c = det.psc(p["test"])
    assert 0.0 <= float(psc_c.min()) and float(psc_c.max()) <= 1.0


def test_score_is_minus_log_one_minus_psc():
    p = planted(3)
    det = IBDPSC(n=2).fit(p["model"], p["clean"])
    psc, score = det.psc(p["test"]).double(), det.score(p["test"]).double()
    ok = psc < 0.999   # where float32 PSC still resolves 1 - PSC
    assert ok.any()
    assert torch.allclose(score[ok], -torch.log1p(-psc[ok]), rtol=1e-3, atol=1e-3)


def test_copies_are_built_once_and_amplify_the_last_layers():
    p = planted(3)
    model = p["model"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    det = IBDPSC(n=3, omega=2.0).fit(model, p["clean"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # suspect model untouched
    assert len(det.variants) == 3 and det.forward_passes == 4
    orig = [bn for _, bn in bn_layers(model)]
    for i, v in enumerate(det.variants):
        n_amp = det.start + i
        for j, bn in enumerate(bn for _, bn in bn_layers(v)):
            factor = 2.0 if j >= len(orig) - n_amp else 1.0
            assert torch.allclose(bn.weight, factor * orig[j].weight)
            assert torch.allclose(bn.bias, factor * orig[j].bias)
            assert torch.equal(bn.running_mean, orig[j].running_mean)
    ids = [id(v) for v in det.variants]
    det.score(p["test"][:10])
    det.score(p["test"][:10])
    assert [id(v) for v in det.variants] == ids                      # not rebuilt per batch


def test_adaptive_layer_selection_rule():
    p = planted(1)
    det = IBDPSC(n=2, xi=0.5)
    rates = iter([0.1, 0.4, 0.7, 0.9])
    det._error_rate = lambda m, x, y: next(rates)  # clean error rate when amplifying the last k = 1, 2, ...
    det.fit(p["model"], p["clean"])
    assert det.start == 3 and list(det.error_rates) == [1, 2, 3]     # first k with error > xi
    # no k reaches xi: start at the latest layer that still fits all n copies (L = 5 BN layers)
    det = IBDPSC(n=2, xi=0.5)
    det._error_rate = lambda m, x, y: 0.0
    det.fit(p["model"], p["clean"])
    assert det.start == 4 and len(det.variants) == 2


def test_fewer_bn_layers_than_copies():
    p = planted(1)
    det = IBDPSC(n=8).fit(p["model"], p["clean"])
    assert len(det.variants) == 5 and det.forward_passes == 6 and det.start == 1
    assert det.predict(p["test"]).shape == (len(p["test"]),)


def test_amplified_copy_counts_affine_bn_only():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.BatchNorm2d(2, affine=False), nn.BatchNorm2d(2))
    assert len(bn_layers(m)) == 2
    c = amplified_copy(m, 1, 3.0)
    assert torch.allclose(c[3].weight, 3 * m[3].weight) and torch.allclose(c[1].weight, m[1].weight)


def test_model_without_batchnorm_raises():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    x = torch.rand(20, 1, 8, 8)
    model(x)
    with pytest.raises(ValueError, match="BatchNorm"):
        IBDPSC().fit(model, (x, torch.randint(2, (20,))))


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 1.5}, {"omega": 1.0}, {"omega": 0.5},
                                    {"omega": float("inf")}, {"xi": 0.0}, {"xi": 1.0}])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        detectors.build("ibd_psc", **kwargs)
