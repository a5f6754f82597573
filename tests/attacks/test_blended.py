"""Blended: the output is exactly the convex mix (1 - alpha) x + alpha * pattern."""
from __future__ import annotations

import pytest
import torch

from beniful import attacks

torch.set_num_threads(1)


@pytest.mark.parametrize("alpha", [0.1, 0.2, 0.5])
def test_convex_mix(alpha):
    x = torch.rand(5, 3, 12, 12)
    atk = attacks.build("blended", alpha=alpha)
    out = atk.apply(x)
    assert atk.pattern.shape == (3, 12, 12)
    assert float(atk.pattern.min()) >= 0 and float(atk.pattern.max()) <= 1
    torch.testing.assert_close(out, (1 - alpha) * x + alpha * atk.pattern)


def test_pattern_fixed_by_pattern_seed_not_by_poison_seed():
    x = torch.rand(2, 1, 8, 8)
    a = attacks.build("blended", seed=0).apply(x)
    assert torch.equal(a, attacks.build("blended", seed=9).apply(x))
    assert not torch.equal(a, attacks.build("blended", pattern_seed=99).apply(x))


def test_user_pattern():
    pat = torch.zeros(1, 8, 8)
    pat[:, ::2] = 1.0
    x = torch.rand(3, 1, 8, 8)
    out = attacks.build("blended", alpha=0.3, pattern=pat).apply(x)
    torch.testing.assert_close(out, 0.7 * x + 0.3 * pat)
    with pytest.raises(ValueError, match="pattern has shape"):
        attacks.build("blended", pattern=pat).apply(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize("alpha", [0.0, -0.2, 1.2])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        attacks.build("blended", alpha=alpha)


def test_user_patterns_are_keyed_by_content_not_by_sum():
    """Two patterns with the same sum (a permutation of the same pixels) are different attacks and
    must not share a cached model; the same content (any copy) is the same attack."""
    a = torch.zeros(1, 8, 8)
    a[:, ::2] = 1.0
    b = a.transpose(1, 2).contiguous()          # same pixels, same sum, other stripes
    assert float(a.sum()) == float(b.sum()) and not torch.equal(a, b)
    cfg = lambda p: attacks.build("blended", pattern=p).config()  # noqa: E731
    assert cfg(a) != cfg(b)
    assert cfg(a) == cfg(a.clone()) and cfg(a) != attacks.build("blended").config()
    assert cfg(a) != cfg(a.double())                                  # dtype is part of the content
    assert cfg(a) != cfg(a.reshape(1, 4, 16))                         # and so is the shape
    assert len(cfg(a)["pattern_sha256"]) == 64 and "pattern_sum" not in cfg(a)


def test_a_user_pattern_is_copied_at_build_time():
    pat = torch.full((1, 4, 4), 0.5)
    atk = attacks.build("blended", pattern=pat)
    before = atk.config()
    pat += 0.25  # the caller's tensor changes afterwards: the attack and its key do not
    assert atk.config() == before
    assert torch.allclose(atk.setup((1, 4, 4)).pattern, torch.full((1, 4, 4), 0.5))
    with pytest.raises(TypeError, match="pattern"):
        attacks.build("blended", pattern=[[0.5]])
