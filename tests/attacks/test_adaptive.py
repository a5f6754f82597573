"""Adaptive-Blend and Adaptive-Patch: cover samples keep their labels, training sees a partial
trigger and test time the whole one, and the trainer hands the cover samples to the attack."""
from __future__ import annotations

import pytest
import torch

from beniful import attacks, models
from beniful.training import TrainConfig, train_classifier

torch.set_num_threads(1)

ADAPTIVE = ["adaptive_blend", "adaptive_patch"]


def _images(n: int = 16, c: int = 1, hw: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, hw, hw, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ADAPTIVE)
def test_cover_samples_are_counted_disjoint_and_seeded(name):
    y = torch.arange(400) % 10
    atk = attacks.build(name, rate=0.05, cover_rate=0.1, seed=3)
    poison, cover = atk.poison_indices(y), atk.cover_indices(y)
    assert len(poison) == 20 and len(cover) == 40
    assert not set(poison.tolist()) & set(cover.tolist())
    assert len(set(y[cover].tolist())) > 1, "cover samples come from any class, the target's too"
    assert torch.equal(cover, attacks.build(name, rate=0.05, cover_rate=0.1, seed=3).cover_indices(y))
    assert not torch.equal(cover, attacks.build(name, rate=0.05, cover_rate=0.1, seed=4).cover_indices(y))
    assert len(attacks.build(name, rate=0.05, cover_rate=0.0).cover_indices(y)) == 0


@pytest.mark.parametrize("name", ADAPTIVE)
def test_training_batch_relabels_poison_keeps_cover_labels_and_leaves_the_rest(name):
    atk = attacks.build(name, target=1, rate=0.1, cover_rate=0.1)
    x, y = _images(), torch.arange(16) % 4 + 2  # no item is of the target class 1
    poison = torch.zeros(16, dtype=torch.bool)
    poison[[0, 1, 2, 3]] = True
    cover = torch.zeros(16, dtype=torch.bool)
    cover[[4, 5, 6, 7]] = True
    xo, yo, extra = atk.training_batch(x, y, poison, torch.Generator().manual_seed(0), cover_mask=cover)
    assert extra is None and xo.shape == x.shape
    assert float(xo.min()) >= 0 and float(xo.max()) <= 1
    assert bool((yo[poison] == 1).all())
    assert torch.equal(yo[~poison], y[~poison]), "cover samples keep their true labels"
    marked = poison | cover
    assert all(not torch.equal(xo[i], x[i]) for i in torch.nonzero(marked).flatten())
    assert torch.equal(xo[~marked], x[~marked])
    # the training trigger is partial: weaker than the test-time one, and not the same on every item
    full = atk.apply(x[marked])
    assert float((xo[marked] - x[marked]).abs().sum()) < float((full - x[marked]).abs().sum())
    changed = (xo[marked] != x[marked]).flatten(1)
    assert len({tuple(r.tolist()) for r in changed}) > 1
    # deterministic for the trainer's generator
    xo2, _, _ = atk.training_batch(x, y, poison, torch.Generator().manual_seed(0), cover_mask=cover)
    assert torch.equal(xo, xo2)


def test_adaptive_blend_masks_half_the_pieces_at_the_training_opacity():
    atk = attacks.build("adaptive_blend", rate=0.1, pieces=16, mask_rate=0.5, alpha=0.2, train_alpha=0.15)
    x = torch.full((6, 1, 16, 16), 0.5)
    mask = torch.ones(6, dtype=torch.bool)
    xo, _, _ = atk.training_batch(x, torch.ones(6, dtype=torch.long), mask, torch.Generator().manual_seed(1))
    cells = (xo != x)[:, 0].reshape(6, 4, 4, 4, 4).any(4).any(2)  # N x 4 x 4: which 4x4 cells changed
    assert (cells.flatten(1).sum(1) == 8).all(), "8 of the 16 pieces on every training sample"
    expect = 0.85 * x + 0.15 * atk.pattern
    assert torch.allclose(xo[(xo != x)], expect[(xo != x)], atol=1e-6)
    assert torch.allclose(atk.apply(x), 0.8 * x + 0.2 * atk.pattern, atol=1e-6)


def test_adaptive_patch_stamps_all_patches_at_test_time_and_a_subset_in_training():
    atk = attacks.build("adaptive_patch", rate=0.1, n_patches=4, train_patches=2, patch_size=3,
                        alpha=1.0, train_alpha=0.5)
    x = torch.full((5, 1, 16, 16), 0.5)
    out = atk.apply(x)
    assert int((out[0] != x[0]).sum()) > 0
    assert int(atk.masks.sum()) == 4 * 9 and torch.equal(atk.masks.amax(0).bool(), (out[0] != x[0]) | (atk.pattern == 0.5))
    xo, _, _ = atk.training_batch(x, torch.ones(5, dtype=torch.long), torch.ones(5, dtype=torch.bool),
                                  torch.Generator().manual_seed(0))
    for i in range(5):
        hit = [bool((xo[i][atk.masks[k].bool()] != 0.5).any()) for k in range(4)]
        assert sum(hit) == 2
    assert set(xo.unique().tolist()) <= {0.25, 0.5, 0.75}, "opacity 0.5 over 0/1 noise"


@pytest.mark.parametrize("kw, msg", [
    ({"cover_rate": 1.0}, "cover_rate"), ({"cover_rate": -0.1}, "cover_rate"),
    ({"rate": 0.6, "cover_rate": 0.5}, "rate \\+ cover_rate"),
])
@pytest.mark.parametrize("name", ADAPTIVE)
def test_bad_rates(name, kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build(name, **kw)


@pytest.mark.parametrize("kw, msg", [
    ({"pieces": 10}, "square number"), ({"pieces": 1}, "square number"), ({"mask_rate": 1.0}, "mask_rate"),
    ({"train_alpha": 0.0}, "train_alpha"), ({"alpha": 1.5}, "alpha"),
])
def test_adaptive_blend_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("adaptive_blend", **kw)


@pytest.mark.parametrize("kw, msg", [
    ({"n_patches": 1}, "n_patches"), ({"n_patches": 9}, "n_patches"), ({"train_patches": 5}, "train_patches"),
    ({"patch_size": 0}, "patch_size"), ({"train_alpha": 0.0}, "train_alpha"),
])
def test_adaptive_patch_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("adaptive_patch", **kw)


def test_adaptive_patch_too_large_for_the_image():
    with pytest.raises(ValueError, match="too large"):
        attacks.build("adaptive_patch", patch_size=6).apply(_images(hw=12))


def test_trainer_passes_the_cover_samples_to_the_attack():
    seen: list[tuple[int, int]] = []

    class Spy(attacks.ATTACKS.get("adaptive_blend")):  # type: ignore[misc]
        def training_batch(self, x, y, poison_mask, generator=None, cover_mask=None):
            assert cover_mask is not None and not bool((poison_mask & cover_mask).any())
            seen.append((int(poison_mask.sum()), int(cover_mask.sum())))
            return super().training_batch(x, y, poison_mask, generator, cover_mask=cover_mask)

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 1, 12, 12, generator=g), torch.arange(60) % 4
    atk = Spy(rate=0.1, cover_rate=0.2, pieces=4)
    model = models.build("preact_resnet18", num_classes=4, in_channels=1, width=2)
    cfg = TrainConfig(epochs=2, batch_size=20, lr=0.05, crop_padding=1, hflip=False)
    train_classifier(model, x, y, cfg, attack=atk, poison_idx=atk.poison_indices(y), seed=0, device="cpu",
                     progress=False)
    assert sum(p for p, _ in seen) == 2 * 6 and sum(c for _, c in seen) == 2 * 12
