"""Tiny planted backdoor cases for the baseline eliminators (fixtures prefixed ``baseline_``).

Data: 1x12x12 stripe textures, four classes (horizontal, vertical and the two diagonals, random
phase, values in [0, 0.6]). Trigger: a 3x3 white patch in the bottom-right corner; target class 0.

- ``baseline_poisoned``: a tiny CNN trained for a few seconds with 10% poisoned training data.
- ``baseline_planted``: a clean-trained CNN plus one hand-planted *backdoor neuron*: an extra
  channel in both conv stages whose BN bias keeps it at zero on every clean image (a dormant unit,
  with running and with batch statistics)
  and which fires only on the 3x3 trigger and drives the logit of the target class. Clean
  behaviour equals the clean model's exactly, so pruning/masking tests have a known answer.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIZE, CLASSES, TARGET = 12, 4, 0
#: the stripe classes are orientations and the trigger sits in one corner, so a mirrored image is
#: another class (the two diagonals swap) with the trigger elsewhere, as with digits: every repair of
#: these cases trains without flips, as the package does on digits (``beniful.method_defaults``)
NO_FLIP = {"hflip": False}


class TinyNet(nn.Module):
    """conv-BN-ReLU x 2, global average pooling, linear: the smallest net with a 'last conv stage'."""

    def __init__(self, width: int = 6, classes: int = CLASSES) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(width, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.pool(self.stage2(self.stage1(x))).flatten(1))


def stripes(n: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % CLASSES
    r = torch.arange(SIZE).float()
    rows, cols = r.view(-1, 1), r.view(1, -1)
    coords = [rows + 0 * cols, cols + 0 * rows, rows + cols, rows - cols]
    phase = torch.rand(n, generator=g) * 2 * math.pi
    x = torch.stack([0.25 + 0.25 * torch.sin(2 * math.pi * coords[int(c)] / 4 + p) for c, p in zip(y, phase)])
    x = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 0.6)
    return x.unsqueeze(1), y


def trigger(x: Tensor) -> Tensor:
    x = x.clone()
    x[..., -3:, -3:] = 1.0
    return x


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).float().mean())


@torch.no_grad()
def asr(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    keep = y != TARGET
    return float((model(trigger(x[keep])).argmax(1) == TARGET).float().mean())


def train(width: int, x: Tensor, y: Tensor, epochs: int = 10, seed: int = 0) -> nn.Module:
    """A TinyNet trained with Adam; initialisation and batches depend on ``seed`` only."""
    torch.manual_seed(seed)
    model = TinyNet(width)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def baseline_data() -> SimpleNamespace:
    torch.set_num_threads(1)
    xtr, ytr = stripes(400, 0)
    xcl, ycl = stripes(120, 1)  # the defender's clean data
    xte, yte = stripes(400, 2)
    return SimpleNamespace(x_train=xtr, y_train=ytr, clean=(xcl, ycl), x_test=xte, y_test=yte, target=TARGET,
                           trigger=trigger, accuracy=accuracy, asr=asr)


@pytest.fixture(scope="session")
def baseline_clean_model(baseline_data: SimpleNamespace) -> nn.Module:
    return train(6, baseline_data.x_train, baseline_data.y_train, epochs=8)


@pytest.fixture(scope="session")
def baseline_poisoned(baseline_data: SimpleNamespace) -> nn.Module:
    """Backdoor learned from data: 10% of the training images carry the trigger, relabelled to 0."""
    x, y = baseline_data.x_train.clone(), baseline_data.y_train.clone()
    idx = torch.nonzero(y != TARGET).flatten()[::7][:40]
    x[idx], y[idx] = trigger(x[idx]), TARGET
    return train(6, x, y, epochs=10, seed=1)


def plant(clean: TinyNet, x_ref: Tensor) -> SimpleNamespace:
    """``clean`` plus one extra, dormant trigger-detector channel (index ``unit``) in both stages."""
    w = clean.linear.in_features
    net = TinyNet(w + 1).eval()
    src = clean.state_dict()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            s = src[name]
            if t.ndim == 0:
                t.copy_(s)
            elif name.startswith("stage1.0"):  # conv1: out x in
                t.zero_()
                t[:w] = s
            elif name.startswith("stage2.0"):
                t.zero_()
                t[:w, :w] = s
            elif name == "linear.weight":
                t.zero_()
                t[:, :w] = s
            elif name == "linear.bias":
                t.copy_(s)
            else:  # BN vectors
                t[:w] = s
        # planted unit, stage1: the mean of a 3x3 window, standardised with the clean statistics, minus 3.5.
        # Clean windows stay below 2.7 standard deviations, the white patch reaches 12: the unit is
        # dormant on clean data with running statistics *and* with batch statistics (ANP, train mode).
        kernel = torch.full((1, 1, 3, 3), 1.0 / 9)
        resp = F.conv2d(x_ref, kernel, padding=1)
        net.stage1[0].weight[w] = kernel[0]
        bn1 = net.stage1[1]
        bn1.running_mean[w], bn1.running_var[w] = resp.mean(), resp.var() - bn1.eps
        bn1.weight[w], bn1.bias[w] = 1.0, -3.5
        # ... stage2 copies it (centre tap) and sends it to the target logit
        net.stage2[0].weight[w, w, 1, 1] = 1.0
        bn2 = net.stage2[1]
        bn2.running_mean[w], bn2.running_var[w], bn2.weight[w], bn2.bias[w] = 0.0, 1.0 - bn2.eps, 1.0, 0.0
        net.linear.weight[TARGET, w] = 400.0
    return SimpleNamespace(model=net, unit=w)


@pytest.fixture(scope="session")
def baseline_planted(baseline_clean_model: TinyNet, baseline_data: SimpleNamespace) -> SimpleNamespace:
    return plant(baseline_clean_model, baseline_data.x_train)
