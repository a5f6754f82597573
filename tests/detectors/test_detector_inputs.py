"""Input handling shared by every detector: the forms ``score`` / ``predict`` accept and the [0, 1] check.

A random (untrained) conv-BN net is enough: these tests are about what goes in, not about detection.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from beniful import detectors
from beniful.datasets import ImageDataset
from beniful.utils import Normalize

FAST = {"autoencoder": {"steps": 3}, "beniful": {"layer": "stage1", "vae_epochs": 2, "latent_dim": 4, "augment": 0},
        "strip": {"n_overlays": 4}, "scale_up": {}, "ibd_psc": {"n": 2},
        "teco": {"corruptions": ("gaussian_noise", "brightness")}}


class Net(nn.Module):
    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.head(self.stage2(self.stage1(x)))


def data(n: int = 30, channels: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, channels, 8, 8, generator=g), torch.arange(n) % 3


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    model = Net()
    return {name: detectors.build(name, device="cpu", **kw).fit(model, data()) for name, kw in FAST.items()}


def test_every_detector_is_covered():
    assert set(FAST) == set(detectors.available())


@pytest.mark.parametrize("name", sorted(FAST))
def test_score_and_predict_accept_every_form(fitted, name):
    det = fitted[name]
    x, y = data(10, seed=1)
    ref_s, ref_p = det.score(x), det.predict(x)
    assert ref_s.shape == (10,) and ref_p.dtype == torch.bool
    u8 = (x * 255).round().to(torch.uint8)
    forms = [(x,), (x, y), TensorDataset(x), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=3),
             DataLoader(TensorDataset(x), batch_size=4)]
    for form in forms:
        assert torch.equal(det.score(form), ref_s), type(form).__name__
        assert torch.equal(det.predict(form), ref_p), type(form).__name__
    # uint8 images (an ImageDataset, a uint8 tensor) are scaled to [0, 1] like fit's clean data
    assert torch.equal(det.score(ImageDataset(u8, y)), det.score(u8.float() / 255))


@pytest.mark.parametrize("name", sorted(FAST))
def test_score_refuses_normalised_inputs(fitted, name):
    x, _ = data(6, seed=2)
    with pytest.raises(ValueError, match="fold the normalisation into the model"):
        fitted[name].score((x - 0.5) / 0.25)
    with pytest.raises(ValueError, match="fold the normalisation into the model"):
        fitted[name].predict(DataLoader(TensorDataset(x * 3), batch_size=2))


def test_fit_refuses_normalised_clean_data_before_touching_the_model():
    model = Net()
    x, y = data()
    with pytest.raises(ValueError, match="values in .*fold the normalisation into the model"):
        detectors.build("strip", n_overlays=4).fit(model, ((x - 0.5) / 0.25, y))
    assert all(p.requires_grad for p in model.parameters())  # not frozen: refused before any work
    with pytest.raises(ValueError, match="fold the normalisation"):
        detectors.build("strip", n_overlays=4).fit(model, TensorDataset(x * 2, y))


def test_a_model_with_folded_normalisation_takes_raw_images():
    """What the error message tells a user with an ImageNet-normalised model to do."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = nn.Sequential(Normalize(mean, std), Net(channels=3))
    x, y = data(channels=3)
    det = detectors.build("scale_up", device="cpu").fit(model, (x, y))
    assert det.score(x[:5]).shape == (5,)


def test_beniful_signals_accept_every_form(fitted):
    det = fitted["beniful"]
    x, y = data(8, seed=3)
    ref = det.signals(x)
    for form in ((x,), TensorDataset(x, y), DataLoader(TensorDataset(x), batch_size=3)):
        got = det.signals(form)
        assert all(torch.equal(got[k], ref[k]) for k in ref)
        assert torch.equal(det.scores_by_signal(form)["both"], det.scores_by_signal(x)["both"])
    with pytest.raises(ValueError, match="fold the normalisation"):
        det.signals(x - 0.5)
