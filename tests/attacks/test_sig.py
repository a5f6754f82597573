"""SIG: adds the horizontal sinusoid; clean-label poisoning of the target class only."""
from __future__ import annotations

import math

import pytest
import torch

from beniful import attacks

torch.set_num_threads(1)


def test_adds_the_signal():
    x = torch.full((2, 3, 10, 20), 0.5)
    out = attacks.build("sig", delta=40, frequency=6).apply(x)
    j = torch.arange(20, dtype=torch.float32)
    signal = 40 / 255 * torch.sin(2 * math.pi * j * 6 / 20)
    torch.testing.assert_close(out - x, signal.expand_as(x))


def test_clamps_into_range():
    x = torch.zeros(1, 1, 8, 8)
    out = attacks.build("sig", delta=100).apply(x)
    assert float(out.min()) == 0.0 and float(out.max()) > 0.3


def test_poisons_only_target_class_and_keeps_labels():
    y = torch.arange(400) % 10
    atk = attacks.build("sig", target=3, rate=0.05)
    idx = atk.poison_indices(y)
    assert len(idx) == 20 and bool((y[idx] == 3).all())
    assert torch.equal(atk.poison_labels(y[idx]), y[idx])
    # more requested than the class holds: every target-class sample, no more
    assert len(attacks.build("sig", target=3, rate=0.5).poison_indices(y)) == 40


def test_training_batch_keeps_labels_and_adds_signal():
    atk = attacks.build("sig", target=0)
    x, y = torch.rand(6, 1, 8, 8) * 0.5 + 0.25, torch.tensor([0, 0, 1, 2, 0, 3])
    mask = torch.tensor([True, False, False, False, True, False])
    xo, yo, extra = atk.training_batch(x, y, mask)
    assert extra is None and torch.equal(yo, y)
    assert torch.equal(xo[~mask], x[~mask])
    torch.testing.assert_close(xo[mask], x[mask] + atk.signal[0])


def test_no_target_samples_is_an_error():
    with pytest.raises(ValueError, match="no candidate"):
        attacks.build("sig", target=7).poison_indices(torch.arange(20) % 5)


@pytest.mark.parametrize("kw,msg", [({"delta": 0}, "delta"), ({"delta": 300}, "delta"), ({"frequency": 0}, "frequency")])
def test_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("sig", **kw)
