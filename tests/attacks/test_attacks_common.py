"""Behaviour every attack shares: registry, parameter checks, shape/range, determinism,
poisoning policy and per-batch label handling."""
from __future__ import annotations

import json

import pytest
import torch

from beniful import attacks

torch.set_num_threads(1)

NAMES = ["adaptive_blend", "adaptive_patch", "adv_embedding", "badnets", "blended", "iad", "sig", "wanet"]
ALL_TO_ONE = ["adaptive_blend", "adaptive_patch", "adv_embedding", "badnets", "blended", "iad", "wanet"]
#: attacks whose training-time trigger is the test-time one (the adaptive ones train on partial triggers)
SAME_TRIGGER_IN_TRAINING = [n for n in NAMES if not n.startswith("adaptive")]


def _images(n: int = 8, c: int = 1, hw: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, hw, hw, generator=torch.Generator().manual_seed(seed))


def _build(name: str, **kw) -> attacks.Attack:
    if name == "iad":
        kw.setdefault("gen_width", 2)  # tiny generator: tests stay fast
    return attacks.build(name, **kw)


def test_available_lists_the_eight_attacks():
    assert attacks.available() == NAMES


def test_unknown_attack_lists_valid_names():
    with pytest.raises(ValueError, match="unknown attack 'trojan'.*adaptive_blend, adaptive_patch, adv_embedding, badnets, blended, iad, sig, wanet"):
        attacks.build("trojan")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("rate", [-0.1, 0.0, 1.0, 1.5])
def test_bad_rate_rejected(name, rate):
    with pytest.raises(ValueError, match="rate"):
        _build(name, rate=rate)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [{"target": -1}, {"target": 1.5}, {"seed": "a"}])
def test_bad_target_or_seed_rejected(name, bad):
    with pytest.raises(ValueError):
        _build(name, **bad)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("c", [1, 3])
def test_apply_keeps_shape_dtype_and_range(name, c):
    x = _images(c=c)
    out = _build(name).apply(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x), "the trigger must change the image"


@pytest.mark.parametrize("name", NAMES)
def test_apply_rejects_bad_input(name):
    atk = _build(name)
    with pytest.raises(ValueError):
        atk.apply(torch.rand(1, 16, 16))
    with pytest.raises(ValueError):
        atk.apply(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    atk.apply(_images(hw=16))
    with pytest.raises(ValueError, match="built for images"):
        atk.apply(_images(hw=12))
    with pytest.raises(ValueError, match="fold the normalisation into the model"):
        atk.apply((_images(hw=16) - 0.5) / 0.25)  # e.g. mean/std-normalised images


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name):
    x = _images(c=3)
    assert torch.equal(_build(name, seed=3).apply(x), _build(name, seed=3).apply(x))
    y = torch.arange(200) % 10  # rate 0.05 leaves a choice even for clean-label SIG (10 of 20)
    a, b, c = (_build(name, seed=s, rate=0.05).poison_indices(y) for s in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ALL_TO_ONE)
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.33])
def test_all_to_one_poison_count_and_pool(name, rate):
    y = torch.arange(203) % 10
    atk = _build(name, rate=rate, target=2)
    idx = atk.poison_indices(y)
    assert len(idx) == round(rate * len(y))
    assert torch.equal(idx, torch.sort(torch.unique(idx)).values)
    assert bool((y[idx] != 2).all()), "all-to-one never poisons target-class samples"
    assert torch.equal(atk.poison_labels(y[idx]), torch.full((len(idx),), 2))


@pytest.mark.parametrize("name", SAME_TRIGGER_IN_TRAINING)
def test_training_batch_labels(name):
    atk = _build(name, target=1, rate=0.25)
    x, y = _images(n=16), torch.arange(16) % 4
    mask = torch.zeros(16, dtype=torch.bool)
    mask[[2, 3, 6, 7]] = True
    xo, yo, _ = atk.training_batch(x, y, mask, torch.Generator().manual_seed(0))
    assert xo.shape == x.shape
    expected = y.clone() if atk.clean_label else torch.where(mask, torch.full_like(y, 1), y)
    assert torch.equal(yo, expected)
    assert not torch.equal(xo[mask], x[mask])
    assert torch.allclose(xo[mask].detach(), atk.apply(x[mask]), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_config_is_json_and_names_the_attack(name):
    cfg = _build(name, target=3, rate=0.2, seed=5).config()
    assert cfg["name"] == name and cfg["target"] == 3 and cfg["rate"] == 0.2 and cfg["seed"] == 5
    json.dumps(cfg)


@pytest.mark.parametrize("name", NAMES)
def test_asr_inputs_drop_target_class(name):
    atk = _build(name, target=0)
    x, y = _images(n=10), torch.arange(10) % 5
    assert len(atk.asr_inputs(x, y)) == int((y != 0).sum())
