"""Adversarial embedding: the feature-matching loss, the trainer hook that adds it, and that training
with it brings triggered features closer to the benign target-class ones than plain BadNets does."""
from __future__ import annotations

import pytest
import torch

from beniful import attacks, features, models
from beniful.attacks.adv_embedding import feature_matching_loss
from beniful.training import TrainConfig, train_classifier

torch.set_num_threads(1)


def test_loss_is_zero_for_equal_sets_positive_otherwise_and_scale_free():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(8, 4, 3, 3, generator=g)
    assert float(feature_matching_loss(a, a)) == pytest.approx(0.0, abs=1e-7)
    b = torch.rand(8, 4, 3, 3, generator=g) + 1.0
    d = float(feature_matching_loss(b, a))
    assert d > 0.1
    assert float(feature_matching_loss(10 * b, 10 * a)) == pytest.approx(d, rel=1e-5)
    assert float(feature_matching_loss(b[torch.randperm(8)], a)) == pytest.approx(d, rel=1e-5), "a set, not pairs"


def test_loss_rejects_small_or_mismatched_sets():
    with pytest.raises(ValueError, match="at least 2"):
        feature_matching_loss(torch.rand(1, 4), torch.rand(5, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        feature_matching_loss(torch.rand(3, 4), torch.rand(3, 5))


def _batch(target: int = 0):
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(24, 1, 16, 16, generator=g), torch.arange(24) % 3
    mask = torch.zeros(24, dtype=torch.bool)
    mask[[1, 2, 4, 5, 7]] = True  # labels 1, 2, 1, 2, 1: never the target
    return x, y, mask


def test_training_forward_adds_the_weighted_loss_at_the_layer():
    x, y, mask = _batch()
    model = models.build("preact_resnet18", num_classes=3, in_channels=1, width=2).train()
    losses = {}
    for w in (0.0, 1.0, 2.0):
        atk = attacks.build("adv_embedding", target=0, rate=0.2, weight=w, layer="layer2")
        xo, yo, extra = atk.training_batch(x, y, mask)
        assert extra is None and bool((yo[mask] == 0).all())
        torch.manual_seed(0)
        logits, loss = atk.training_forward(model, model, xo)
        assert logits.shape == (24, 3)
        losses[w] = loss
    assert losses[0.0] is None
    assert losses[1.0].requires_grad and float(losses[1.0].detach()) > 0
    assert float(losses[2.0].detach()) == pytest.approx(2 * float(losses[1.0].detach()), rel=1e-4)


def test_training_forward_skips_a_batch_without_two_reference_items_and_names_a_bad_layer():
    x, y, mask = _batch()
    model = models.build("preact_resnet18", num_classes=3, in_channels=1, width=2).train()
    atk = attacks.build("adv_embedding", target=0, rate=0.2, weight=1.0)
    y_no_ref = torch.where(y == 0, torch.ones_like(y), y)
    xo, _, _ = atk.training_batch(x, y_no_ref, mask)
    assert atk.training_forward(model, model, xo)[1] is None
    bad = attacks.build("adv_embedding", weight=1.0, layer="layer9")
    xo, _, _ = bad.training_batch(x, y, mask)
    with pytest.raises(ValueError, match="layer9"):
        bad.training_forward(model, model, xo)


@pytest.mark.parametrize("kw, msg", [({"weight": -1.0}, "weight"), ({"layer": ""}, "layer"), ({"patch_size": 0}, "patch_size")])
def test_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("adv_embedding", **kw)


def test_config_records_weight_and_layer():
    cfg = attacks.build("adv_embedding", weight=0.5, layer="layer2").config()
    assert cfg["weight"] == 0.5 and cfg["layer"] == "layer2" and cfg["patch_size"] == 3


def test_training_with_the_loss_brings_triggered_features_closer_to_benign_target_ones():
    g = torch.Generator().manual_seed(0)
    n = 240
    y = torch.arange(n) % 3
    x = (torch.rand(n, 1, 12, 12, generator=g) * 0.3 + 0.2 * y[:, None, None, None]).clamp(0, 1)
    gaps = {}
    for w in (0.0, 3.0):
        atk = attacks.build("adv_embedding", target=0, rate=0.2, weight=w, layer="layer3")
        torch.manual_seed(0)
        model = models.build("preact_resnet18", num_classes=3, in_channels=1, width=4)
        cfg = TrainConfig(epochs=4, batch_size=40, lr=0.05, crop_padding=0, hflip=False)
        train_classifier(model, x, y, cfg, attack=atk, poison_idx=atk.poison_indices(y), seed=0, device="cpu",
                         progress=False)
        with torch.no_grad():
            h_trig = features.extract(model, "layer3", atk.apply(x[y != 0][:60]))
            h_ref = features.extract(model, "layer3", x[y == 0][:60])
        gaps[w] = float(feature_matching_loss(h_trig, h_ref))
    assert gaps[3.0] < 0.7 * gaps[0.0], gaps
