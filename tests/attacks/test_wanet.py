"""WaNet: a fixed smooth warp; noise mode adds cross samples that keep their true labels."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from beniful import attacks

torch.set_num_threads(1)


def _smooth(n: int = 8, hw: int = 16) -> torch.Tensor:
    """Smooth random images (a pure warp of white noise is hard to tell from noise)."""
    g = torch.Generator().manual_seed(0)
    return F.interpolate(torch.rand(n, 1, 4, 4, generator=g), size=hw, mode="bilinear", align_corners=True)


def test_warp_is_small_smooth_and_fixed():
    x = _smooth()
    a = attacks.build("wanet", s=0.5)
    out = a.apply(x)
    assert 0 < float((out - x).abs().max()) < 0.2  # imperceptible: a sub-pixel move of a smooth image
    assert torch.equal(out, attacks.build("wanet", s=0.5, seed=7).apply(x))  # field set by grid_seed only
    assert not torch.equal(out, attacks.build("wanet", s=0.5, grid_seed=1).apply(x))
    big = attacks.build("wanet", s=3.0).apply(x)
    assert float((big - x).abs().mean()) > float((out - x).abs().mean())


def test_field_is_the_same_for_every_image():
    a = attacks.build("wanet", s=2.0)
    a.setup((1, 16, 16))
    # warping an image of its own column / row coordinates reveals the sampling grid
    lin = torch.linspace(0, 1, 16)
    cols = lin.view(1, 1, 1, 16).expand(1, 1, 16, 16)
    rows = lin.view(1, 1, 16, 1).expand(1, 1, 16, 16)
    warped = a.apply(torch.cat([cols, rows]))
    expected_x = (a.grid[0, ..., 0] + 1) / 2
    torch.testing.assert_close(warped[0, 0], expected_x, atol=1e-5, rtol=0)
    torch.testing.assert_close(warped[1, 0], (a.grid[0, ..., 1] + 1) / 2, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cross_ratio", [0.0, 1.0, 2.0])
def test_noise_mode_adds_cross_samples_with_true_labels(cross_ratio):
    atk = attacks.build("wanet", target=0, rate=0.1, s=1.0, cross_ratio=cross_ratio)
    n = 40
    x, y = _smooth(n), torch.arange(n) % 4 + 1
    mask = torch.zeros(n, dtype=torch.bool)
    mask[:4] = True
    xo, yo, extra = atk.training_batch(x, y, mask, torch.Generator().manual_seed(0))
    assert extra is None
    assert bool((yo[mask] == 0).all()) and torch.equal(yo[~mask], y[~mask])
    changed = (xo != x).flatten(1).any(1) & ~mask
    assert int(changed.sum()) == round(cross_ratio * 0.1 * n)
    if cross_ratio > 0:  # the noise warp is not the trigger warp
        assert not torch.allclose(xo[changed], atk.apply(x[changed]))


def test_noise_warp_is_seeded():
    atk = attacks.build("wanet")
    x = _smooth()
    a = atk.noise_warp(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, atk.noise_warp(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, atk.noise_warp(x, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("kw,msg", [({"k": 1}, "k must"), ({"s": 0}, "s must"), ({"cross_ratio": -1}, "cross_ratio")])
def test_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("wanet", **kw)


def test_non_square_rejected():
    with pytest.raises(ValueError, match="square"):
        attacks.build("wanet").apply(torch.rand(1, 1, 8, 10))
