"""Input handling shared by every eliminator: the forms ``clean`` and ``pool`` take, and the [0, 1] check."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from beniful import eliminators
from beniful.datasets import ImageDataset
from beniful.eliminators.base import Eliminator



class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(self.stage2(self.stage1(x)).mean((2, 3)))


def stripes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random 1x12x12 images in [0, 0.6] and four balanced labels."""
    g = torch.Generator().manual_seed(seed)
    return 0.6 * torch.rand(n, 1, 12, 12, generator=g), torch.arange(n) % 4


class Probe(Eliminator):
    """Records what ``_repair`` receives (the base class's coercion is what is tested)."""

    name = "probe"

    def _repair(self, model, x, y, pool):
        self.got = (x, y, pool)
        return model


def test_pool_accepts_every_form():
    x, y = stripes(12, seed=0)
    pool, pool_y = stripes(9, seed=1)
    u8 = (pool * 255).round().to(torch.uint8)
    forms = {"tensor": pool, "x_tuple": (pool,), "xy_tuple": (pool, pool_y), "dataset": TensorDataset(pool),
             "labelled_dataset": TensorDataset(pool, pool_y), "loader": DataLoader(TensorDataset(pool), batch_size=4),
             "labelled_loader": DataLoader(TensorDataset(pool, pool_y), batch_size=2)}
    for name, form in forms.items():
        el = Probe(device="cpu")
        el.repair(TinyNet(), (x, y), pool=form)
        assert isinstance(el.got[2], torch.Tensor) and torch.equal(el.got[2], pool), name
    el = Probe(device="cpu")
    el.repair(TinyNet(), TensorDataset(x, y), pool=ImageDataset(u8, pool_y))
    assert torch.equal(el.got[2], u8.float() / 255)
    assert torch.equal(el.got[0], x) and torch.equal(el.got[1], y)
    el.repair(TinyNet(), (x, y))
    assert el.got[2] is None


@pytest.mark.parametrize("name", ["ft", "beniful"])
def test_normalised_clean_data_is_refused_before_any_work(name):
    x, y = stripes(12, seed=0)
    model = TinyNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    el = eliminators.build(name, epochs=1, device="cpu")
    with pytest.raises(ValueError, match="clean images has values in .*fold the normalisation into the model"):
        el.repair(model, ((x - 0.3) / 0.2, y))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert el.wall_seconds != el.wall_seconds  # NaN: no repair ran


def test_normalised_pool_is_refused_before_the_detector_is_fitted():
    x, y = stripes(12, seed=0)
    pool, _ = stripes(8, seed=1)
    el = eliminators.build("beniful", layer="stage2", epochs=1, device="cpu")
    for bad in ((pool - 0.3) / 0.2, DataLoader(TensorDataset(pool * 4), batch_size=4)):
        with pytest.raises(ValueError, match="pool has values in .*fold the normalisation into the model"):
            el.repair(TinyNet(), (x, y), pool=bad)
    assert el.detector is None


def test_pool_of_an_unsupported_type_is_a_type_error():
    x, y = stripes(6, seed=0)
    with pytest.raises(TypeError, match="pool must be a tensor"):
        Probe(device="cpu").repair(TinyNet(), (x, y), pool="images/")


def test_beniful_repair_takes_a_dataloader_pool_like_a_tensor():
    """End to end on the real BeniFul eliminator: the same pool as a tensor or as a DataLoader gives
    the same suspicious set and the same repaired weights."""
    torch.manual_seed(0)
    x, y = stripes(40, seed=0)
    pool, _ = stripes(16, seed=1)
    pool[:6, :, -3:, -3:] = 1.0
    model = TinyNet().eval()
    kw = {"layer": "stage2", "epochs": 1, "device": "cpu", "detector_kwargs": {"vae_epochs": 2, "latent_dim": 4}}
    a = eliminators.build("beniful", **kw)
    b = eliminators.build("beniful", **kw)
    fixed_a = a.repair(model, (x, y), pool=pool)
    fixed_b = b.repair(model, (x, y), pool=DataLoader(TensorDataset(pool), batch_size=5))
    assert torch.equal(a.suspicious_mask, b.suspicious_mask)
    sa, sb = fixed_a.state_dict(), fixed_b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert isinstance(fixed_a, nn.Module)
