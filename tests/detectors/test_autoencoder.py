"""Input-space autoencoder detector (after Neural Trojans, Liu et al., ICCD 2017).

Planted cases: the shared 16x16 backdoor (``baseline_planted``: bright squares on a noisy dark
background, a checkerboard trigger that forces class 0) for the reconstruction error and for a
trained model; hand-built two-class models that read one corner of the image for the prediction
flip, so whether the flip signal fires depends only on whether the model looks at the patch.
"""
from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn

from baseline_planted import TARGET, make_images, planted, stamp
from beniful import detectors
from beniful.detectors.autoencoder import SIGNALS, AutoencoderDetector, ImageAutoencoder
from beniful.metrics import auroc

FAST = {"steps": 200}  # the 16x16 planted images: ~1 s a fit on one thread


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class CornerNet(nn.Module):
    """Two classes from the mean brightness of one 4x4 corner: class 0 when it is bright."""

    def __init__(self, corner: str = "bottom_right") -> None:
        super().__init__()
        self.corner = corner
        self.scale = nn.Parameter(torch.tensor(20.0))  # a parameter, so the detector has a device to move

    def forward(self, x):
        patch = x[..., -4:, -4:] if self.corner == "bottom_right" else x[..., :4, :4]
        m = patch.mean((1, 2, 3)) - 0.3
        return torch.stack([self.scale * m, -self.scale * m], 1)


class SmallNet(nn.Module):
    """An untrained conv-BN net that takes any image size (the shape tests)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def fitted() -> tuple[dict, AutoencoderDetector]:
    p = planted(1)
    return p, detectors.build("autoencoder", device="cpu", **FAST).fit(p["model"], p["clean"])


# ---------------------------------------------------------------------------------- reconstruction error
def test_reconstruction_error_ranks_an_unseen_patch_above_clean_images(fitted):
    p, det = fitted
    loss = det.history
    assert len(loss) == 10 and loss[-1] < 0.5 * loss[0]  # the autoencoder learned something
    s = det.scores_by_signal(p["test"])["recon"]
    t = det.scores_by_signal(p["trig"])["recon"]
    assert torch.isfinite(s).all() and torch.isfinite(t).all()
    assert auroc(s, t) >= 0.95  # measured 1.00
    assert float(t.median()) > float(s.quantile(0.95))
    raw_clean, raw_trig = det.signals(p["test"])["recon"], det.signals(p["trig"])["recon"]
    assert float(raw_trig.median()) > 2 * float(raw_clean.median())  # squared-pixel units, before the log


def test_a_patch_the_autoencoder_was_fitted_on_is_no_longer_anomalous():
    """The control: the error measures novelty. Fitted on clean images half of which carry the
    checkerboard (unshifted, so it stays in its corner), the autoencoder rebuilds it, and the recon
    score no longer separates (measured 0.55; 1.00 with the same fit on clean images only)."""
    p = planted(1)
    x, y = p["clean"]
    x = x.clone()
    x[::2] = stamp(x[::2])
    seen = detectors.build("autoencoder", signal="recon", shift=0, device="cpu", **FAST).fit(p["model"], (x, y))
    assert auroc(seen.score(p["test"]), seen.score(p["trig"])) < 0.7
    unseen = detectors.build("autoencoder", signal="recon", shift=0, device="cpu", **FAST).fit(p["model"], p["clean"])
    assert auroc(unseen.score(p["test"]), unseen.score(p["trig"])) >= 0.95


def test_reconstruct_returns_images_of_the_input_shape(fitted):
    p, det = fitted
    xr = det.reconstruct(p["test"][:5])
    assert xr.shape == (5, 1, 16, 16) and xr.device.type == "cpu"
    assert float(xr.min()) >= 0 and float(xr.max()) <= 1
    # the reconstruction drops the trigger: the checkerboard's white squares come back dark
    rec = det.reconstruct(p["trig"][:20])[..., -4:, -4:]
    white = stamp(torch.zeros(1, 1, 16, 16))[..., -4:, -4:].bool().expand_as(rec)
    assert float(rec[white].mean()) < 0.5


# ---------------------------------------------------------------------------------- prediction flip
def test_flip_fires_when_the_model_reads_the_patch():
    p = planted(1)
    det = detectors.build("autoencoder", signal="flip", device="cpu", **FAST).fit(CornerNet(), p["clean"])
    s, t = det.score(p["test"]), det.score(p["trig"])
    assert auroc(s, t) >= 0.95  # measured 1.00
    sig = det.signals(p["trig"])
    assert float((sig["pred"] == 0).float().mean()) == 1.0          # the patch sets class 0 ...
    assert float((sig["pred_rec"] != sig["pred"]).float().mean()) > 0.9  # ... and the reconstruction drops it
    clean = det.signals(p["test"])
    assert float((clean["pred_rec"] != clean["pred"]).float().mean()) < 0.05


def test_flip_is_blind_to_a_patch_the_model_ignores():
    """Same images, a model that reads the opposite corner: no flip, so no separation (the flip
    signal is about the model, the recon signal about the image)."""
    p = planted(1)
    det = detectors.build("autoencoder", device="cpu", **FAST).fit(CornerNet("top_left"), p["clean"])
    flip = auroc(det.scores_by_signal(p["test"])["flip"], det.scores_by_signal(p["trig"])["flip"])
    assert 0.3 < flip < 0.7  # measured 0.44
    assert auroc(det.scores_by_signal(p["test"])["recon"], det.scores_by_signal(p["trig"])["recon"]) >= 0.95


@pytest.mark.parametrize("channels", [1, 3])
def test_both_signals_on_a_trained_backdoored_model(channels):
    p = planted(channels)
    det = detectors.build("autoencoder", device="cpu", **FAST).fit(p["model"], p["clean"])
    sig = det.signals(p["trig"])
    assert float((sig["pred"] == TARGET).float().mean()) > 0.9      # the backdoor works ...
    assert float((sig["pred_rec"] != TARGET).float().mean()) > 0.8  # ... but not through the autoencoder
    assert auroc(det.score(p["test"]), det.score(p["trig"])) >= 0.95  # measured 1.00


def test_one_fit_serves_every_signal(fitted):
    p, det = fitted
    x = p["test"][:40]
    by = det.scores_by_signal(x)
    assert set(by) == set(SIGNALS) and set(det.thresholds) == set(SIGNALS)
    assert torch.allclose(by["both"], by["recon"] + by["flip"], atol=1e-5)
    assert torch.allclose(det.score(x), by["both"], atol=1e-6)
    assert det.threshold == det.thresholds["both"]
    # a detector built for one signal (same seed, same autoencoder) scores exactly that signal
    recon = AutoencoderDetector(signal="recon", device="cpu", **FAST).fit(p["model"], p["clean"])
    assert torch.allclose(recon.score(x), by["recon"], atol=1e-6)
    assert recon.threshold == pytest.approx(det.thresholds["recon"])


def test_forward_passes_and_recon_does_not_run_the_model(fitted):
    p, det = fitted
    assert det.forward_passes == 2.0 and det.inputs_per_item == 2
    recon = AutoencoderDetector(signal="recon", device="cpu", steps=2).fit(p["model"], p["clean"])
    assert recon.forward_passes == 0.0
    calls = []
    handle = p["model"].register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    try:
        recon.score(p["test"][:10])
        assert calls == []
        det.score(p["test"][:10])
        assert sum(calls) == 20  # the input and its reconstruction, in one doubled batch
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("fpr", [0.05, 0.1])
def test_predict_flags_about_fpr_of_held_out_clean_images(fpr):
    p = planted(1)
    fit_clean = make_images(600, 1, seed=10)      # 30% of it (180 images) calibrates the threshold
    held_out, _ = make_images(1000, 1, seed=11)   # seen by neither the fit nor the calibration
    det = AutoencoderDetector(fpr=fpr, device="cpu", **FAST).fit(p["model"], fit_clean)
    flags = det.predict(held_out)
    assert flags.dtype == torch.bool and flags.shape == (len(held_out),)
    rate = float(flags.float().mean())
    assert abs(rate - fpr) <= 0.04, f"clean flag rate {rate:.3f} at target fpr {fpr}"
    assert float(det.predict(p["trig"]).float().mean()) > 0.9


def test_score_and_predict_before_fit_raise():
    with pytest.raises(RuntimeError, match="fit"):
        AutoencoderDetector().score(torch.rand(2, 1, 16, 16))
    with pytest.raises(RuntimeError, match="fit"):
        AutoencoderDetector().predict(torch.rand(2, 1, 16, 16))


# ---------------------------------------------------------------------------------- determinism
def test_same_seed_same_detector_whatever_the_global_rng():
    p = planted(1)
    x = p["test"][:16]
    torch.manual_seed(1)
    a = AutoencoderDetector(seed=3, steps=30, device="cpu").fit(p["model"], p["clean"])
    state = torch.random.get_rng_state()
    b = AutoencoderDetector(seed=3, steps=30, device="cpu").fit(p["model"], p["clean"])
    assert torch.equal(state, torch.random.get_rng_state())  # the fit leaves the global stream alone
    c = AutoencoderDetector(seed=4, steps=30, device="cpu").fit(p["model"], p["clean"])
    assert a.history == b.history and torch.equal(a.score(x), b.score(x)) and a.threshold == b.threshold
    assert not torch.equal(a.score(x), c.score(x))
    assert torch.equal(a.score(x), a.score(x))  # no sampling at score time


# ---------------------------------------------------------------------------------- shapes and devices
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 8, 8), (3, 7, 9)])
def test_image_shapes(shape):
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, *shape, generator=g), torch.arange(40) % 3
    torch.manual_seed(0)
    det = detectors.build("autoencoder", steps=3, device="cpu").fit(SmallNet(shape[0]), (x, y))
    s = det.score(x[:6])
    assert s.shape == (6,) and s.dtype == torch.float32 and torch.isfinite(s).all()
    assert det.reconstruct(x[:2]).shape == (2, *shape)
    assert det.ae is not None and det.ae.sizes[-1][0] <= 4 and det.ae.sizes[-1][1] <= 5
    other = (shape[0], shape[1] + 2, shape[2])
    with pytest.raises(ValueError, match=re.escape(f"shape {other}")):
        det.score(torch.rand(2, *other))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_is_deterministic_and_detects():
    p = planted(1)
    model = copy.deepcopy(p["model"])  # the detector moves the model it guards: keep the shared one on the CPU
    a = AutoencoderDetector(device="cuda", **FAST).fit(model, p["clean"])
    b = AutoencoderDetector(device="cuda", **FAST).fit(model, p["clean"])
    s = a.score(p["test"])
    assert s.device.type == "cpu" and torch.equal(s, b.score(p["test"]))
    assert next(a.ae.parameters()).device.type == "cuda"
    assert auroc(s, a.score(p["trig"])) >= 0.95


# ---------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs,match", [
    ({"signal": "r"}, "unknown signal 'r'; valid signals: both, recon, flip"),
    ({"steps": 0}, "steps must be a positive integer, got 0"),
    ({"steps": 2.5}, "steps must be a positive integer"),
    ({"latent_dim": 0}, "latent_dim must be a positive integer"),
    ({"width": -4}, "width must be a positive integer"),
    ({"ae_batch_size": True}, "ae_batch_size must be a positive integer"),
    ({"lr": 0.0}, "lr must be a positive finite number, got 0.0"),
    ({"lr": float("nan")}, "lr must be a positive finite number"),
    ({"shift": -1}, "shift must be a non-negative integer"),
    ({"fpr": 1.5}, "fpr"),
])
def test_bad_parameters_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detectors.build("autoencoder", **kwargs)


def test_bad_combine_signal_and_too_little_clean_data(fitted):
    p, det = fitted
    sig = det.signals(p["test"][:4])
    with pytest.raises(ValueError, match="valid signals: both, recon, flip"):
        det.combine(sig["recon"], sig["flip"], "c")
    with pytest.raises(ValueError, match="at least 2 clean images"):
        AutoencoderDetector(steps=2).fit(p["model"], (p["test"][:2], p["y_test"][:2]))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        ImageAutoencoder((16, 16))
