"""SCALE-UP (Guo et al., 2023): predictions of triggered inputs survive pixel amplification."""
from __future__ import annotations

import pytest
import torch

from baseline_planted import planted
from beniful import detectors
from beniful.detectors.scale_up import ScaleUp, amplify
from beniful.metrics import auroc


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("channels", [1, 3])
def test_spc_is_higher_for_triggered_inputs(channels):
    p = planted(channels)
    det = detectors.build("scale_up").fit(p["model"], p["clean"])
    s_clean, s_trig = det.score(p["test"]), det.score(p["trig"])
    assert s_clean.shape == (len(p["test"]),)
    # SPC is a share of the 5 scales
    assert set((s_clean * 5).round().long().tolist()) <= set(range(6))
    assert float(s_trig.mean()) > float(s_clean.mean()) + 0.2
    assert auroc(s_clean, s_trig) > 0.8


def test_amplify_scales_and_clips():
    x = torch.tensor([0.0, 0.1, 0.3]).view(1, 1, 1, 3)
    a = amplify(x, (2.0, 5.0))
    assert a.shape == (2, 1, 1, 3)
    assert torch.allclose(a[0].flatten(), torch.tensor([0.0, 0.2, 0.6]))
    assert torch.allclose(a[1].flatten(), torch.tensor([0.0, 0.5, 1.0]))


def test_normalisation_with_clean_statistics():
    p = planted(1)
    plain = ScaleUp().fit(p["model"], p["clean"])
    glob = ScaleUp(normalize="global").fit(p["model"], p["clean"])
    cls = ScaleUp(normalize="class").fit(p["model"], p["clean"])
    sp, sg, sc = plain.score(p["test"]), glob.score(p["test"]), cls.score(p["test"])
    # global normalisation is an increasing affine map of SPC
    mu, sigma = glob.global_stats
    assert sigma > 0 and torch.allclose(sg, (sp - mu) / sigma, atol=1e-5)
    # class-wise: one (mu, sigma) per class, each sigma floored at the SPC resolution 1/|S|
    assert cls.mu is not None and cls.sigma is not None and len(cls.mu) == 4
    assert float(cls.sigma.min()) >= 1 / 5 - 1e-6
    pred = p["model"](p["test"]).argmax(1)
    expect = (sp - cls.mu[pred]) / cls.sigma[pred]
    assert torch.allclose(sc, expect, atol=1e-5)


def test_predict_and_cost():
    p = planted(3)
    det = ScaleUp(scales=(2, 4, 8), fpr=0.1).fit(p["model"], p["clean"])
    assert det.forward_passes == 4
    flags = det.predict(p["test"])
    assert flags.dtype == torch.bool and flags.shape == (len(p["test"]),)
    assert float(flags.float().mean()) <= 0.25


@pytest.mark.parametrize("kwargs", [{"scales": ()}, {"scales": (1.0, 3.0)}, {"scales": (0.5,)},
                                    {"scales": "abc"}, {"scales": (float("inf"),)}, {"normalize": "batch"}])
def test_bad_parameters_raise(kwargs):
    with pytest.raises(ValueError):
        detectors.build("scale_up", **kwargs)


def test_binary_images_are_fixed_points_of_amplification():
    """Why SCALE-UP cannot separate near-binary digits (the quick profile's MNIST): pixels at 0
    stay 0 and pixels >= 1/3 saturate, so every amplified copy of a binary image equals it and
    SPC is 1 for clean and triggered inputs alike, whatever the model."""
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 1, 12, 12, generator=g) > 0.8).float()          # strokes at 1 on black
    a = amplify(x, (3, 5, 7, 9, 11)).view(5, *x.shape)
    assert torch.equal(a, x.expand_as(a))
    # a mid-grey (natural-image-like) pixel is washed out instead
    assert float(amplify(torch.full((1, 1, 2, 2), 0.3), (5,)).min()) == 1.0
    det = ScaleUp().fit(planted(1)["model"], planted(1)["clean"])
    assert torch.equal(det.score(x), torch.ones(len(x)))
