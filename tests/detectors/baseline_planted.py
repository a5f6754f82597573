"""A tiny planted backdoor shared by the baseline-detector tests (STRIP, SCALE-UP, IBD-PSC, TeCo).

Synthetic 16x16 images: class k (of 4) is a bright 5x5 square in quadrant k on a dark noisy
background. The trigger is a 4x4 black-and-white checkerboard in the bottom-right corner that
forces class 0 (10% of the training set is poisoned). A small CNN with five BatchNorm layers is
trained for a few seconds, with random gain/offset/noise augmentation so that, as for a natural
model, clean predictions break at similar corruption severities (the premise TeCo relies on).
Cached per channel count, so the four test files share one training run per pytest process.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

SIZE, N_CLASSES, TARGET = 16, 4, 0
CORNERS = ((2, 2), (2, 9), (9, 2), (9, 9))  # top-left of each class's square
CHECKER = ((torch.arange(4)[:, None] + torch.arange(4)[None]) % 2).float()


def make_images(n: int, channels: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(N_CLASSES, (n,), generator=g)
    x = 0.15 * torch.rand(n, channels, SIZE, SIZE, generator=g)
    jitter = torch.randint(-1, 2, (n, 2), generator=g)
    level = 0.6 + 0.4 * torch.rand(n, generator=g)
    for i in range(n):
        r, c = CORNERS[int(y[i])]
        r, c = r + int(jitter[i, 0]), c + int(jitter[i, 1])
        x[i, :, r:r + 5, c:c + 5] = level[i]
    return x, y


def stamp(x: Tensor) -> Tensor:
    x = x.clone()
    x[..., SIZE - 4:, SIZE - 4:] = CHECKER
    return x


class TinyNet(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()

        def block(i: int, o: int, s: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(*block(channels, 8, 1), *block(8, 16, 2), *block(16, 16, 1),
                                      *block(16, 32, 2), *block(32, 32, 1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, N_CLASSES))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@lru_cache(maxsize=None)
def planted(channels: int = 1) -> dict:
    """{'model', 'clean': (x, y), 'test', 'y_test', 'trig'}: clean data for ``fit``, clean test
    images and triggered versions of the non-target test images."""
    torch.manual_seed(0)
    x, y = make_images(800, channels, seed=1)
    n_poison = 80
    x[:n_poison] = stamp(x[:n_poison])
    y[:n_poison] = TARGET
    model = TinyNet(channels)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(2)
    model.train()
    for _ in range(6):
        perm = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            xb = x[idx]
            n = len(xb)
            gain = 0.6 + 0.6 * torch.rand(n, 1, 1, 1, generator=g)
            off = -0.1 + 0.3 * torch.rand(n, 1, 1, 1, generator=g)
            sd = 0.1 * torch.rand(n, 1, 1, 1, generator=g)
            xb = (xb * gain + off + sd * torch.randn(xb.shape, generator=g)).clamp(0, 1)
            opt.zero_grad()
            nn.functional.cross_entropy(model(xb), y[idx]).backward()
            opt.step()
    model.eval()
    xc, yc = make_images(200, channels, seed=3)
    xt, yt = make_images(300, channels, seed=4)
    return {"model": model, "clean": (xc, yc), "test": xt, "y_test": yt, "trig": stamp(xt[yt != TARGET])}
