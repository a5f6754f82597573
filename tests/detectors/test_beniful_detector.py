"""BeniFul's detector (VAE on middle features; reconstruction distance r + inference consistency c).

Acceptance of issue 3: the VAE's loss falls, scores have the right shape and order on a planted
backdoor, the threshold calibrated on clean data hits the target FPR on *held-out* clean data, and
the detector runs on models the package did not build (torchvision's ResNet-18 at ``layer3``, a
plain ``nn.Sequential`` addressed by index) with clear errors for bad layers and parameters.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from baseline_planted import TARGET, make_images, planted
from beniful import detectors, sources
from beniful.detectors.beniful import SIGNALS, BeniFulDetector
from beniful.metrics import auroc

# the planted TinyNet: features = 5 x (conv, bn, relu); "features.8" ends the third block (16 x 8 x 8)
MID = "features.8"
FAST = {"vae_epochs": 20, "latent_dim": 16, "augment": 0}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fitted() -> tuple[dict, BeniFulDetector]:
    p = planted(1)
    det = detectors.build("beniful", layer=MID, **FAST).fit(p["model"], p["clean"])
    return p, det


# ---------------------------------------------------------------------------------- fitting
def test_vae_training_loss_falls(fitted):
    _, det = fitted
    hist = det.vae_history
    assert len(hist) == FAST["vae_epochs"]
    assert all(v == v for v in hist)  # no NaN
    assert hist[-1] < 0.7 * hist[0]
    assert min(hist[-3:]) < min(hist[:3])
    assert not any(p.requires_grad for p in det.vae.parameters())  # frozen after fit
    assert not any(p.requires_grad for p in det.model.parameters())  # the suspect model too


def test_more_vae_epochs_reach_a_lower_loss():
    p = planted(1)
    short = BeniFulDetector(layer=MID, **{**FAST, "vae_epochs": 3}).fit(p["model"], p["clean"])
    long = BeniFulDetector(layer=MID, **FAST).fit(p["model"], p["clean"])
    assert long.vae_history[-1] < short.vae_history[-1]


def test_same_seed_same_detector_whatever_the_global_rng():
    p = planted(1)
    torch.manual_seed(1)
    a = BeniFulDetector(layer=MID, seed=3, **{**FAST, "vae_epochs": 2}).fit(p["model"], p["clean"])
    torch.manual_seed(2)
    b = BeniFulDetector(layer=MID, seed=3, **{**FAST, "vae_epochs": 2}).fit(p["model"], p["clean"])
    c = BeniFulDetector(layer=MID, seed=4, **{**FAST, "vae_epochs": 2}).fit(p["model"], p["clean"])
    x = p["test"][:16]
    assert a.vae_history == b.vae_history and torch.equal(a.score(x), b.score(x))
    assert not torch.equal(a.score(x), c.score(x))


# ---------------------------------------------------------------------------------- scores
def test_scores_have_shape_and_put_triggered_inputs_above_clean_ones(fitted):
    p, det = fitted
    s_clean, s_trig = det.score(p["test"]), det.score(p["trig"])
    assert s_clean.shape == (len(p["test"]),) and s_trig.shape == (len(p["trig"]),)
    assert s_clean.dtype == torch.float32 and s_clean.device.type == "cpu"
    assert torch.isfinite(s_clean).all() and torch.isfinite(s_trig).all()
    assert float(s_trig.median()) > float(s_clean.quantile(0.95))
    assert auroc(s_clean, s_trig) > 0.95
    # the same input always gets the same score (the VAE reads its mean path, no sampling)
    assert torch.equal(det.score(p["test"][:16]), s_clean[:16])


def test_raw_signals_are_larger_on_triggered_inputs(fitted):
    p, det = fitted
    sc, st = det.signals(p["test"]), det.signals(p["trig"])
    for k in ("r", "c", "pred", "pred_rec"):
        assert sc[k].shape == (len(p["test"]),)
    assert (sc["r"] >= 0).all() and (sc["c"] >= 0).all()
    assert float(st["r"].median()) > 2 * float(sc["r"].median())
    assert float(st["c"].median()) > float(sc["c"].median())
    # the backdoored model answers the target on triggered inputs; the reconstruction mostly does not
    assert float((st["pred"] == TARGET).float().mean()) > 0.9
    assert float((st["pred_rec"] == TARGET).float().mean()) < float((st["pred"] == TARGET).float().mean())
    # on clean inputs the reconstruction keeps the model's prediction
    assert float((sc["pred_rec"] == sc["pred"]).float().mean()) > 0.9


def test_scores_by_signal_match_the_detectors_configured_signal(fitted):
    p, det = fitted
    x = torch.cat([p["test"][:20], p["trig"][:20]])
    by = det.scores_by_signal(x)
    assert set(by) == set(SIGNALS)
    assert torch.allclose(by["both"], det.score(x), atol=1e-5)
    # "both" is the weighted sum of the two standardised signals
    assert torch.allclose(by["both"], det.r_weight * by["r"] + det.c_weight * by["c"], atol=1e-4)
    assert set(det.thresholds) == set(SIGNALS)


@pytest.mark.parametrize("signal", ["r", "c"])
def test_single_signal_detector_scores_with_that_signal(fitted, signal):
    p, both = fitted
    det = BeniFulDetector(layer=MID, signal=signal, **FAST).fit(p["model"], p["clean"])
    x = torch.cat([p["test"][:20], p["trig"][:20]])
    # same seed and data: the same VAE, so the score equals the "both" detector's single-signal reading
    assert torch.allclose(det.score(x), both.scores_by_signal(x)[signal], atol=1e-4)
    assert det.threshold == pytest.approx(det.thresholds[signal])


# ---------------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("fpr", [0.05, 0.1])
def test_calibrated_threshold_hits_the_target_fpr_on_held_out_clean_data(fpr):
    p = planted(1)
    fit_clean = make_images(1000, 1, seed=10)      # 30% of it (300 images) calibrates the threshold
    held_out, _ = make_images(1500, 1, seed=11)    # never seen by fit or calibration
    det = BeniFulDetector(layer=MID, fpr=fpr, **FAST).fit(p["model"], fit_clean)
    flags = det.predict(held_out)
    assert flags.dtype == torch.bool and flags.shape == (len(held_out),)
    rate = float(flags.float().mean())
    assert abs(rate - fpr) <= 0.04, f"clean flag rate {rate:.3f} at target fpr {fpr}"
    assert float(det.predict(p["trig"]).float().mean()) > 0.9


def test_predict_before_fit_and_score_uncalibrated_raise():
    det = BeniFulDetector(layer=MID, **FAST)
    with pytest.raises(RuntimeError, match="fit"):
        det.predict(torch.rand(2, 1, 16, 16))


def test_wrong_input_shape_raises(fitted):
    _, det = fitted
    with pytest.raises(ValueError, match="shape"):
        det.score(torch.rand(2, 3, 16, 16))


# ---------------------------------------------------------------------------------- foreign models
def _toy_clean(n: int, channels: int, size: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, size, size, generator=g), torch.randint(classes, (n,), generator=g)


def test_torchvision_resnet18_layer3():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    x, y = _toy_clean(48, 3, 32, 10, seed=0)
    det = detectors.build("beniful", layer="layer3", vae_epochs=3, latent_dim=8, augment=0).fit(model, (x, y))
    assert det.vae is not None and det.vae.shape == (256, 2, 2)  # ResNet-18 layer3 on 32 x 32 input
    assert det.batched  # nothing skips over layer3: the one-front-pass trick holds
    assert 1.0 < det.forward_passes < 2.0
    xs = torch.rand(6, 3, 32, 32)
    s = det.score(xs)
    assert s.shape == (6,) and torch.isfinite(s).all()
    assert det.predict(xs).shape == (6,)
    # the reconstructed pass really ran the tail of the torchvision model: g(h(x)) == f(x) when h_hat = h
    from beniful import features
    with torch.no_grad():
        f, g, _, _ = features.forward_with_reconstruction(model, "layer3", xs, lambda h: h)
    assert torch.allclose(f, g, atol=1e-5)


@pytest.mark.parametrize("layer, shape", [("2", (8, 8, 8)), ("6", (64,))])
def test_plain_sequential_by_index(layer, shape):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(),
                          nn.Conv2d(8, 4, 3, 2, 1), nn.Flatten(), nn.ReLU(), nn.Linear(64, 3)).eval()
    x, y = _toy_clean(60, 1, 16, 3, seed=1)
    det = BeniFulDetector(layer=layer, vae_epochs=5, latent_dim=4, augment=1).fit(model, (x, y))
    assert det.vae.shape == shape  # conv VAE on a feature map, MLP VAE on a flat feature
    assert len(det.vae_history) == 5 and det.vae_history[-1] < det.vae_history[0]
    s = det.score(torch.rand(7, 1, 16, 16))
    assert s.shape == (7,) and torch.isfinite(s).all()


# ---------------------------------------------------------------------------------- errors
def test_unknown_layer_names_the_valid_ones():
    p = planted(1)
    with pytest.raises(ValueError, match=r"layer3.*features.*head|features.*head"):
        BeniFulDetector(layer="layer3", **FAST).fit(p["model"], p["clean"])
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    with pytest.raises(ValueError, match=r"layer5.*layer1, layer2, layer3, layer4"):
        BeniFulDetector(layer="layer5", **FAST).fit(model, _toy_clean(20, 3, 32, 10, seed=0))


@pytest.mark.parametrize("kwargs, names", [
    ({"signal": "rc"}, "both, r, c"),
    ({"consistency": "js"}, "kl, ce"),
    ({"layer": ""}, "layer"),
    ({"layer": 3}, "layer"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"vae_epochs": -1}, "vae_epochs"),
    ({"vae_epochs": 2.5}, "vae_epochs"),
    ({"vae_batch_size": 0}, "vae_batch_size"),
    ({"augment": -1}, "augment"),
    ({"beta": -0.1}, "beta"),
    ({"r_weight": float("nan")}, "r_weight"),
    ({"vae_lr": 0.0}, "vae_lr"),
    ({"fpr": 1.5}, "fpr"),
    ({"calib_fraction": 0.0}, "calib_fraction"),
])
def test_bad_parameters_raise_a_value_error_naming_them(kwargs, names):
    with pytest.raises(ValueError, match=names):
        detectors.build("beniful", **kwargs)


def test_unknown_detector_name_lists_beniful():
    with pytest.raises(ValueError, match="beniful"):
        detectors.build("benifull")


def test_cached_fit_is_identical_and_skips_training(tmp_path, monkeypatch):
    """``cache=True``: the second fit of the same detector on the same model and clean data loads the
    VAE and calibration (same scores, threshold and recorded fit time) instead of training."""
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    data = planted(1)
    a = BeniFulDetector(layer=MID, cache=True, **FAST).fit(data["model"], data["clean"])
    b = BeniFulDetector(layer=MID, cache=True, **FAST).fit(data["model"], data["clean"])
    assert not a.from_cache and b.from_cache and b.vae_history == a.vae_history
    x = torch.cat([data["test"][:20], data["trig"][:20]])
    assert torch.equal(a.score(x), b.score(x)) and a.threshold == b.threshold and a.thresholds == b.thresholds
    assert b.fit_seconds == a.fit_seconds
    assert len(list(tmp_path.glob("detector/*.safetensors"))) == 1


def test_cache_key_changes_with_model_data_and_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    data = planted(1)
    det = BeniFulDetector(layer=MID, cache=True, **FAST)
    x, y = data["clean"]
    k = det.cache_key(data["model"], x, y)
    assert det.cache_key(data["model"], x, y) == k
    assert BeniFulDetector(layer=MID, cache=True, **{**FAST, "vae_epochs": 21}).cache_key(data["model"], x, y) != k
    assert det.cache_key(data["model"], x[1:], y[1:]) != k
    other = copy.deepcopy(data["model"])
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 1e-3
    assert det.cache_key(other, x, y) != k



@pytest.mark.parametrize("edited", ["vae.py", "features.py", "detectors/base.py", "utils.py"])
def test_cache_key_follows_the_code_it_imports(tmp_path, monkeypatch, edited_package, edited):
    """A real edit of a module the detector imports (directly or not) gives a new key: a fit made by
    the old code is never loaded for the new one. Another detector's module leaves the key alone."""
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path / "cache"))
    data = planted(1)
    x, y = data["clean"]
    det = BeniFulDetector(layer=MID, cache=True, **FAST)
    k = det.cache_key(data["model"], x, y)
    monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({"detectors/strip.py": "\n# an edit\n"}, "other"))
    assert det.cache_key(data["model"], x, y) == k
    monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({edited: "\n# an edit\n"}, "edited"))
    assert det.cache_key(data["model"], x, y) != k


def test_corrupt_cache_entry_is_refitted(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    data = planted(1)
    BeniFulDetector(layer=MID, cache=True, **FAST).fit(data["model"], data["clean"])
    (path,) = tmp_path.glob("detector/*.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="corrupt"):
        again = BeniFulDetector(layer=MID, cache=True, **FAST).fit(data["model"], data["clean"])
    assert not again.from_cache and again.vae is not None


def test_uncached_fit_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    data = planted(1)
    BeniFulDetector(layer=MID, **FAST).fit(data["model"], data["clean"])
    assert not any(tmp_path.iterdir()) if tmp_path.exists() else True
    with pytest.raises(ValueError, match="cache"):
        BeniFulDetector(cache="yes")


# ---------------------------------------------------------------------------------- memory budget
def test_augmented_items_are_the_augmented_set_picked_by_index():
    x = torch.rand(7, 2, 9, 9)
    det = BeniFulDetector(augment=3)
    full = det._augmented(x)
    assert full.shape == (28, 2, 9, 9)
    idx = torch.tensor([27, 0, 8, 13, 6])
    assert torch.equal(det._augmented(x, idx), full[idx])


def test_streamed_fit_matches_the_precomputed_one(fitted):
    p, det = fitted
    assert not det.streamed
    kw = {**FAST, "vae_epochs": 3, "augment": 2}
    pre = BeniFulDetector(layer=MID, **kw).fit(p["model"], p["clean"])
    xc = p["clean"][0]
    budget = pre.fit_plan(xc[: len(xc) // 2])["precomputed_bytes"]  # below the 70 % fit part's need
    tiny = BeniFulDetector(layer=MID, memory_budget=budget, **kw)
    streamed = tiny.fit(p["model"], p["clean"])
    assert streamed.streamed and not pre.streamed
    torch.testing.assert_close(streamed.vae.mean, pre.vae.mean)
    torch.testing.assert_close(streamed.vae.std, pre.vae.std)
    assert streamed.vae_history == pytest.approx(pre.vae_history, rel=1e-3)
    x = torch.cat([p["test"][:20], p["trig"][:20]])
    torch.testing.assert_close(streamed.signals(x)["r"], pre.signals(x)["r"], rtol=1e-3, atol=1e-5)
