"""FeatureVAE: sized from any feature shape, its loss falls, it rebuilds what it learned better than
what it never saw, and bad shapes are rejected."""
from __future__ import annotations

import pytest
import torch

from beniful.vae import FeatureVAE, train_vae, vae_loss


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _structured(n: int, shape: tuple[int, ...], seed: int = 0, rank: int = 3) -> torch.Tensor:
    """Features on a low-dimensional manifold: random combinations of a few fixed patterns + noise."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, *shape, generator=torch.Generator().manual_seed(123))
    coef = torch.randn(n, rank, generator=g)
    return torch.einsum("nr,r...->n...", coef, basis) * 2.0 + 0.5 + 0.05 * torch.randn(n, *shape, generator=g)


@pytest.mark.parametrize("shape", [(4, 7, 5), (6, 2, 2), (12,)])
def test_vae_loss_falls_and_shapes_round_trip(shape):
    feats = _structured(64, shape)
    vae = FeatureVAE(shape, latent_dim=4)
    hist = train_vae(vae, feats, epochs=40, batch_size=32, lr=1e-2, seed=0, device="cpu")
    assert len(hist) == 40
    assert hist[-1] < 0.6 * hist[0]
    rec = vae.reconstruct(feats[:5])
    assert rec.shape == feats[:5].shape
    assert vae.distance(feats[:5], rec).shape == (5,)


def test_vae_rebuilds_the_learned_manifold_better_than_off_manifold_features():
    shape = (4, 6, 6)
    feats = _structured(96, shape)
    vae = FeatureVAE(shape, latent_dim=4)
    train_vae(vae, feats, epochs=40, batch_size=32, lr=1e-2, seed=0, device="cpu")
    on = _structured(64, shape, seed=5)
    off = on.clone()
    off[:, :, -2:, -2:] += 6.0  # a local "trigger" the VAE never saw
    with torch.no_grad():
        r_on = vae.distance(on, vae.reconstruct(on))
        r_off = vae.distance(off, vae.reconstruct(off))
    assert r_off.median() > 3 * r_on.median()


def test_vae_training_is_seeded():
    feats = _structured(64, (4, 4, 4))
    a, b = FeatureVAE((4, 4, 4), 3), FeatureVAE((4, 4, 4), 3)
    b.load_state_dict(a.state_dict())
    ha = train_vae(a, feats, epochs=3, seed=7, device="cpu")
    hb = train_vae(b, feats, epochs=3, seed=7, device="cpu")
    assert ha == hb


def test_vae_loss_components_are_nonnegative():
    vae = FeatureVAE((4, 4, 4), 3)
    u = torch.randn(10, 4, 4, 4)
    loss, rec, kl = vae_loss(vae, u, beta=0.5, generator=torch.Generator().manual_seed(0))
    assert rec >= 0 and kl >= 0
    assert torch.isclose(loss, rec + 0.5 * kl)


@pytest.mark.parametrize("shape", [(4, 4), (0, 3, 3), ()])
def test_vae_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="shape"):
        FeatureVAE(shape)


def test_vae_rejects_mismatched_features_and_bad_parameters():
    vae = FeatureVAE((4, 4, 4), 3)
    with pytest.raises(ValueError, match="built for features"):
        vae.reconstruct(torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="latent_dim"):
        FeatureVAE((4, 4, 4), 0)
    with pytest.raises(ValueError, match="epochs"):
        train_vae(vae, torch.randn(8, 4, 4, 4), epochs=0)
    with pytest.raises(ValueError, match="at least 2"):
        train_vae(vae, torch.randn(1, 4, 4, 4))


def test_streamed_moments_match_the_whole_tensor():
    from beniful.vae import streamed_moments
    g = torch.Generator().manual_seed(0)
    h = 5.0 + 3.0 * torch.randn(103, 4, 3, 3, generator=g)
    mean, std, count = streamed_moments(h.split(17), [0, 2, 3])
    assert count == 103 * 9
    torch.testing.assert_close(mean.float(), h.mean([0, 2, 3]))
    torch.testing.assert_close(std.float(), h.std([0, 2, 3]))
    with pytest.raises(ValueError, match="at least 2"):
        streamed_moments([h[:1, :, :1, :1]], [0, 2, 3])


class _Source:
    """Features handed out batch by batch (what a streamed fit gives train_vae)."""

    def __init__(self, feats):
        self.feats, self.asked = feats, []

    def __len__(self):
        return len(self.feats)

    def __getitem__(self, idx):
        self.asked.append(len(idx))
        return self.feats[idx]


def test_streamed_training_matches_the_precomputed_one():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(90, 4, 6, 6, generator=g)
    torch.manual_seed(0)
    a = FeatureVAE((4, 6, 6), 8)
    b = FeatureVAE((4, 6, 6), 8)
    b.load_state_dict(a.state_dict())
    ha = train_vae(a, feats, epochs=3, batch_size=16, device="cpu")
    src = _Source(feats)
    hb = train_vae(b, src, epochs=3, batch_size=16, device="cpu")
    assert max(src.asked) == 16  # never more than one batch at a time
    torch.testing.assert_close(a.mean, b.mean)
    torch.testing.assert_close(a.std, b.std)
    assert hb == pytest.approx(ha, rel=1e-4)
    for (k, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-4, msg=k)
