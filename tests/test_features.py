"""Middle features through hooks on any nn.Module: h(x), g(h_sub), the one-front-pass trick, cost share."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from beniful import features


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _seq() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)).eval()


class SkipNet(nn.Module):
    """A skip connection jumps over ``mid``: the batch-doubling trick must not be used here."""

    def __init__(self) -> None:
        super().__init__()
        self.front = nn.Conv2d(1, 4, 3, padding=1)
        self.mid = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        a = self.front(x)
        return self.head(self.mid(a) + a)


def test_extract_returns_the_layer_output_and_skips_the_rest():
    m, x = _seq(), torch.rand(5, 1, 8, 8)
    calls = []
    m[7].register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        h = features.extract(m, "2", x)
        assert torch.allclose(h, m[:3](x))
    assert calls == []  # the linear layer after the feature never ran


def test_run_substituted_with_the_layer_output_is_the_plain_forward_and_otherwise_the_tail():
    m, x = _seq(), torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        h = features.extract(m, "2", x)
        assert torch.allclose(features.run_substituted(m, "2", x, h), m(x), atol=1e-6)
        h2 = torch.rand_like(h)
        assert torch.allclose(features.run_substituted(m, "2", x, h2), m[3:](h2), atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        features.run_substituted(m, "2", x, h[:, :2])


@pytest.mark.parametrize("batched", [True, False])
def test_forward_with_reconstruction_gives_f_and_g_of_the_rebuilt_feature(batched):
    m, x = _seq(), torch.rand(6, 1, 8, 8)
    rebuild = lambda h: 0.5 * h + 0.1  # noqa: E731
    with torch.no_grad():
        f, g_rec, h, h_hat = features.forward_with_reconstruction(m, "2", x, rebuild, batched=batched)
        assert torch.allclose(f, m(x), atol=1e-5)
        assert torch.allclose(g_rec, m[3:](rebuild(m[:3](x))), atol=1e-5)
        assert torch.allclose(h_hat, rebuild(h))


def test_batched_tail_check_accepts_a_chain_and_refuses_a_skip_over_the_layer():
    rebuild = lambda h: 0.5 * h  # noqa: E731
    assert features.batched_tail_ok(_seq(), "2", torch.rand(4, 1, 8, 8), rebuild)
    assert not features.batched_tail_ok(SkipNet().eval(), "mid", torch.rand(4, 1, 8, 8), rebuild)
    # the two-pass path still works there
    net, x = SkipNet().eval(), torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        f, g_rec, h, _ = features.forward_with_reconstruction(net, "mid", x, rebuild, batched=False)
        a = net.front(x)
        assert torch.allclose(g_rec, net.head(0.5 * net.mid(a) + a), atol=1e-5)


def test_capture_keeps_gradients():
    m, x = _seq().train(), torch.rand(4, 1, 8, 8)
    with features.capture(m, "3") as store:
        m(x)
    store[0].pow(2).mean().backward()
    assert m[0].weight.grad is not None and m[7].weight.grad is None


def test_tail_fraction_is_the_share_of_work_after_the_layer():
    m = _seq()
    x = torch.rand(1, 1, 8, 8)
    macs_conv1 = 8 * 8 * 4 * 9
    macs_conv2 = 4 * 4 * 8 * 4 * 9
    macs_lin = 8 * 3
    total = macs_conv1 + macs_conv2 + macs_lin
    assert features.tail_fraction(m, "2", x) == pytest.approx((macs_conv2 + macs_lin) / total)
    assert features.tail_fraction(m, "7", x) == pytest.approx(0.0)


def test_unknown_layer_lists_valid_names():
    with pytest.raises(ValueError, match="unknown layer 'nope'.*0, 1, 2"):
        features.extract(_seq(), "nope", torch.rand(1, 1, 8, 8))
