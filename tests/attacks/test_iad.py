"""Input-Aware Dynamic attack: per-input triggers, mask pre-training, joint training hooks,
and a state that reproduces (and resumes) the trained trigger exactly."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from beniful import attacks, models
from beniful.training import TrainConfig, train_classifier

torch.set_num_threads(1)


def _data(n: int = 64, c: int = 1, hw: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, hw, hw, generator=g), torch.randint(0, 4, (n,), generator=g)


def _iad(**kw) -> attacks.Attack:
    kw.setdefault("gen_width", 2)
    kw.setdefault("batch_size", 32)
    return attacks.build("iad", **kw)


def _train_steps(atk, x, y, steps: int, seed: int = 0) -> None:
    """Joint-training steps with a stand-in classifier loss that depends on the triggered images."""
    atk.train_mode(True)
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(x), dtype=torch.bool)
    mask[::5] = True
    for _ in range(steps):
        for p in atk.parameters():
            p.grad = None
        xo, yo, extra = atk.training_batch(x, y, mask, g)
        (xo.mean() + extra).backward()
        atk.step()
    atk.train_mode(False)


def test_triggers_differ_between_inputs():
    x, _ = _data()
    atk = _iad(mask_density=0.1)
    atk.setup(x.shape[1:])
    atk.pretrain_mask(x, 3)
    trig = atk.apply(x) - x
    with torch.no_grad():
        m, p = atk.masks(x), atk.patterns(x)
    assert float((m[0] - m[1]).abs().max()) > 1e-3 and float((p[0] - p[1]).abs().max()) > 1e-3
    assert float((trig[0] - trig[1]).abs().max()) > 1e-3


def test_mask_pretraining_meets_density_and_keeps_masks_diverse():
    x, _ = _data(n=96)
    atk = _iad(mask_density=0.1)
    atk.setup(x.shape[1:])
    hist = atk.pretrain_mask(x, 4)
    assert hist[-1] < hist[0]
    with torch.no_grad():
        m = atk.masks(x)
    assert float(m.mean()) < 0.15  # the norm loss held the masks near the density bound
    assert float(m.std(0).mean()) > 0.01  # the diversity loss kept them input-dependent
    assert atk.parameters() and not any(p.requires_grad for p in atk.mask_net.parameters())


def test_apply_is_deterministic_without_grad():
    x, _ = _data()
    atk = _iad()
    out = atk.apply(x)
    assert not out.requires_grad
    atk.train_mode(True)
    assert torch.equal(out, atk.apply(x))
    assert torch.equal(out, _iad().apply(x))
    assert not torch.equal(out, _iad(seed=1).apply(x))


def test_training_batch_modes_and_diversity_loss():
    x, y = _data(n=40)
    atk = _iad(target=3, rate=0.1, cross_rate=0.2)
    mask = torch.zeros(40, dtype=torch.bool)
    mask[:4] = True
    atk.setup(x.shape[1:])
    atk.train_mode(True)
    xo, yo, extra = atk.training_batch(x, y, mask, torch.Generator().manual_seed(0))
    assert bool((yo[mask] == 3).all()) and torch.equal(yo[~mask], y[~mask])
    changed = (xo != x).flatten(1).any(1)
    assert bool(changed[mask].all())
    assert int(changed[~mask].sum()) == round(0.2 * 40)  # cross samples, true labels kept
    cross = torch.nonzero(changed & ~mask).flatten()
    # a cross sample carries another image's trigger, not its own
    assert not torch.allclose(xo[cross].detach(), atk.apply(x[cross]))
    assert extra is not None and extra.ndim == 0 and extra.requires_grad
    (xo.sum() + extra).backward()
    assert all(p.grad is not None for p in atk.parameters())
    assert all(p.grad is None for p in atk.mask_net.parameters())
    atk.train_mode(False)
    assert atk.training_batch(x, y, mask)[2] is None


def test_step_updates_only_the_pattern_generator():
    x, y = _data()
    atk = _iad()
    atk.setup(x.shape[1:])
    m0 = [p.clone() for p in atk.mask_net.parameters()]
    p0 = [p.clone() for p in atk.parameters()]
    _train_steps(atk, x, y, 2)
    assert all(torch.equal(a, b) for a, b in zip(m0, atk.mask_net.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(p0, atk.parameters()))


def test_state_dict_round_trip_through_safetensors(tmp_path):
    x, y = _data()
    atk = _iad(seed=2)
    atk.setup(x.shape[1:])
    atk.pretrain_mask(x, 1)
    _train_steps(atk, x, y, 3)
    state = atk.state_dict()
    assert any(k.startswith("opt.") and k.endswith("exp_avg_sq") for k in state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "iad.safetensors"))
    fresh = _iad(seed=2)
    fresh.load_state_dict(load_file(str(tmp_path / "iad.safetensors")))
    assert torch.equal(fresh.apply(x), atk.apply(x))
    assert not torch.equal(_iad(seed=2).apply(x), atk.apply(x))


def test_resumed_training_matches_uninterrupted():
    x, y = _data()
    a = _iad(gen_lr_decay=0.5)
    a.setup(x.shape[1:])
    _train_steps(a, x, y, 2)
    a.end_epoch(0)
    b = _iad(gen_lr_decay=0.5)
    b.load_state_dict({k: v.clone() for k, v in a.state_dict().items()})
    _train_steps(a, x, y, 2, seed=5)
    _train_steps(b, x, y, 2, seed=5)
    assert b.current_lr() == a.current_lr() == 0.005
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_generator_learning_rate_decays_per_epoch():
    atk = _iad(gen_lr=0.02, gen_lr_decay=0.5)
    atk.setup((1, 12, 12))
    for epoch in range(3):
        atk.end_epoch(epoch)
    assert atk._opt.param_groups[0]["lr"] == pytest.approx(0.0025)
    assert int(atk.state_dict()["epochs_done"]) == 3
    const = _iad()
    const.setup((1, 12, 12))
    const.end_epoch(0)
    assert const._opt.param_groups[0]["lr"] == 0.01


def test_bad_state_rejected():
    with pytest.raises(ValueError, match="shape"):
        _iad().load_state_dict({})
    x, _ = _data()
    small = _iad(gen_width=2)
    small.apply(x)
    with pytest.raises(ValueError, match="does not match"):
        _iad(gen_width=3).load_state_dict(small.state_dict())


@pytest.mark.parametrize("kw,msg", [
    ({"cross_rate": -0.1}, "cross_rate"), ({"rate": 0.5, "cross_rate": 0.5}, "rate \\+ cross_rate"),
    ({"mask_density": 0}, "mask_density"), ({"gen_width": 0}, "gen_width"), ({"lambda_div": -1}, "lambda_div"),
    ({"mask_epochs": -1}, "mask_epochs"), ({"gen_lr": 0}, "gen_lr"), ({"gen_lr_decay": 0}, "gen_lr_decay"),
    ({"gen_lr_decay": 1.5}, "gen_lr_decay"), ({"mask_sharpness": 0}, "mask_sharpness"),
])
def test_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("iad", **kw)


def test_trains_with_the_classifier_through_the_trainer_hooks():
    x, y = _data(n=64)
    atk = _iad(rate=0.2, mask_epochs=1)
    atk.setup(x.shape[1:])
    p0 = [p.clone() for p in atk.parameters()]
    m0 = [p.clone() for p in atk.mask_net.parameters()]
    model = models.build("preact_resnet18", num_classes=4, in_channels=1, width=2)
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, crop_padding=1, hflip=False)
    train_classifier(model, x, y, cfg, attack=atk, poison_idx=atk.poison_indices(y), seed=0, device="cpu",
                     progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(m0, atk.mask_net.parameters()))  # pre-trained
    assert any(not torch.equal(a, b) for a, b in zip(p0, atk.parameters()))  # jointly trained
    assert not atk.pattern_net.training


def test_mask_pretraining_on_uint8_images_matches_float_without_a_float_copy(monkeypatch):
    x8 = (torch.rand(48, 1, 12, 12, generator=torch.Generator().manual_seed(3)) * 255).to(torch.uint8)
    a, b = _iad(mask_epochs=2), _iad(mask_epochs=2)
    a.begin_training(x8.float() / 255, torch.zeros(48), torch.device("cpu"))
    seen = []
    orig = torch.Tensor.float

    def spy(t, *args, **kw):
        seen.append(len(t))
        return orig(t, *args, **kw)

    monkeypatch.setattr(torch.Tensor, "float", spy)
    b.begin_training(x8, torch.zeros(48), torch.device("cpu"))
    monkeypatch.undo()
    assert seen and max(seen) <= b.batch_size  # converted batch by batch, never the whole set
    for pa, pb in zip(a.mask_net.parameters(), b.mask_net.parameters()):
        assert torch.equal(pa, pb)
