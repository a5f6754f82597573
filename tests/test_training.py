"""Tests of beniful.training.

The fast path (uint8 data resident on the device, batched on-device poisoning and crop/flip)
must give the same model as a plain torchvision-style pipeline (a ``Dataset`` that poisons,
pads, crops and flips one sample at a time, fed through a ``DataLoader``) when both use the same
random draws. The plain pipeline below replays those draws from the same per-epoch generator
in a batch sampler, so any difference is a bug in the fast path, not a different random stream.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from beniful import attacks, models
from beniful.training import TrainConfig, _epoch_generator, augment, train_classifier, use_nhwc

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# helpers

def _tiny_data(n: int = 100, c: int = 1, hw: int = 16, classes: int = 4, seed: int = 0) -> tuple[Tensor, Tensor]:
    """uint8 images whose class is the brightest quadrant (learnable, so training moves weights)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randint(0, 80, (n, c, hw, hw), generator=g, dtype=torch.uint8)
    h = hw // 2
    for k in range(classes):
        r, col = divmod(k, 2)
        sel = y == k
        x[sel, :, r * h:(r + 1) * h, col * h:(col + 1) * h] += 150
    return x, y


def _tiny_model(seed: int = 0, in_channels: int = 1, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return models.build("preact_resnet18", num_classes=classes, in_channels=in_channels, width=2)


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _max_diff(a: dict[str, Tensor], b: dict[str, Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


class _ReplayBatchSampler(Sampler):
    """Yields batches of ``(index, dy, dx, flip)`` drawn exactly as the fast path draws them:
    one permutation per epoch, then per batch the crop offsets and the flip coins."""

    def __init__(self, n: int, batch_size: int, padding: int, hflip: bool, seed: int) -> None:
        self.n, self.batch_size, self.padding, self.hflip, self.seed = n, batch_size, padding, hflip, seed
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        g = _epoch_generator(self.seed, self.epoch, torch.device("cpu"))
        perm = torch.randperm(self.n, generator=g)
        p = self.padding
        for start in range(0, self.n, self.batch_size):
            idx = perm[start:start + self.batch_size]
            m = len(idx)
            zeros = torch.zeros(m, dtype=torch.long)
            dy = torch.randint(0, 2 * p + 1, (m,), generator=g) if p > 0 else zeros
            dx = torch.randint(0, 2 * p + 1, (m,), generator=g) if p > 0 else zeros
            flip = torch.rand(m, generator=g) < 0.5 if self.hflip else zeros.bool()
            yield list(zip(idx.tolist(), dy.tolist(), dx.tolist(), flip.tolist()))


class _PlainPoisonedDataset(Dataset):
    """torchvision-style dataset: poison (if the index is poisoned), zero-pad, crop, flip, one sample."""

    def __init__(self, data: Tensor, targets: Tensor, padding: int,
                 attack: attacks.Attack | None = None, poison_idx: Tensor | None = None) -> None:
        self.data, self.targets, self.padding, self.attack = data, targets, padding, attack
        self.poisoned = set(poison_idx.tolist()) if poison_idx is not None else set()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, item: tuple[int, int, int, bool]) -> tuple[Tensor, int]:
        i, dy, dx, flip = item
        img = self.data[i].float() / 255
        label = int(self.targets[i])
        if i in self.poisoned:
            img = self.attack.apply(img[None])[0]
            label = int(self.attack.poison_labels(torch.tensor([label]))[0])
        h, w = img.shape[1:]
        if self.padding:
            img = TF.pad(img, [self.padding] * 4, fill=0)
            img = TF.crop(img, dy, dx, h, w)
        if flip:
            img = TF.hflip(img)
        return img, label


def _plain_train(model: nn.Module, x: Tensor, y: Tensor, cfg: TrainConfig, seed: int,
                 attack: attacks.Attack | None = None, poison_idx: Tensor | None = None) -> nn.Module:
    """The reference loop: DataLoader over the per-sample dataset, SGD + cosine written out."""
    ds = _PlainPoisonedDataset(x, y, cfg.crop_padding, attack, poison_idx)
    sampler = _ReplayBatchSampler(len(y), cfg.batch_size, cfg.crop_padding, cfg.hflip, seed)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=0)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(sampler)
    step = 0
    model.train()
    for epoch in range(cfg.epochs):
        sampler.epoch = epoch
        for xb, yb in loader:
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return model.eval()


# ---------------------------------------------------------------------------------------------
# fast path == plain path

@pytest.mark.parametrize("poison", [False, True], ids=["clean", "badnets"])
def test_fast_path_matches_plain_dataloader_loop(poison: bool) -> None:
    x, y = _tiny_data(n=100)
    # the same memory layout as the plain loop: this test is about batches, augmentation and poison;
    # NHWC's other summation order is checked on its own below (a width-2 net amplifies rounding)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, crop_padding=2, hflip=True, channels_last=False)
    atk, pidx = None, None
    if poison:
        atk = attacks.build("badnets", target=0, rate=0.2, seed=0).setup((1, 16, 16))
        pidx = atk.poison_indices(y)
    init = _tiny_model(seed=3)
    fast = train_classifier(copy.deepcopy(init), x, y, cfg, attack=atk, poison_idx=pidx, seed=11,
                            device="cpu", progress=False)
    plain = _plain_train(copy.deepcopy(init), x, y, cfg, seed=11, attack=atk, poison_idx=pidx)
    s0, sf, sp = _state(init), _state(fast), _state(plain)
    assert _max_diff(sf, s0) > 1e-2, "training did not move the weights"
    assert _max_diff(sf, sp) < 1e-4, "fast path and plain DataLoader loop diverged"


def test_channels_last_trains_the_same_model_to_rounding() -> None:
    """NHWC (the default, CPU included, for speed) only reorders sums: one epoch agrees with the
    contiguous layout to float rounding, and the model comes back in the contiguous layout."""
    x, y = _tiny_data(n=100)
    init = _tiny_model(seed=3)
    out = {}
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # where the CPU uses NHWC (use_nhwc)
    try:
        for cl in (False, True):
            cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, crop_padding=2, hflip=True, channels_last=cl)
            out[cl] = train_classifier(copy.deepcopy(init), x, y, cfg, seed=11, device="cpu", progress=False)
    finally:
        torch.set_num_threads(old)
    assert _max_diff(_state(out[True]), _state(init)) > 1e-2
    assert _max_diff(_state(out[True]), _state(out[False])) < 1e-4
    assert all(p.is_contiguous() for p in out[True].parameters())


def test_nhwc_only_where_it_was_measured_safe() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_nhwc(cpu, (1, 28, 28), threads=1)
    assert not use_nhwc(cpu, (3, 64, 64), threads=1)  # crashed training a smoke model (torch 2.14.1)
    assert not use_nhwc(cpu, (1, 28, 28), threads=2)  # crashed BeniFul-BE's backward
    assert use_nhwc(cuda, (3, 32, 32), threads=8)


def test_fast_path_poisoning_changes_the_model() -> None:
    """Guards the test above: the plain loop must see the poison too, else both could skip it."""
    x, y = _tiny_data(n=100)
    cfg = TrainConfig(epochs=1, batch_size=32, lr=0.05, crop_padding=0, hflip=False)
    atk = attacks.build("badnets", target=0, rate=0.2, seed=0).setup((1, 16, 16))
    init = _tiny_model(seed=3)
    clean = train_classifier(copy.deepcopy(init), x, y, cfg, seed=1, device="cpu", progress=False)
    pois = train_classifier(copy.deepcopy(init), x, y, cfg, attack=atk, poison_idx=atk.poison_indices(y),
                            seed=1, device="cpu", progress=False)
    assert _max_diff(_state(clean), _state(pois)) > 1e-3


# ---------------------------------------------------------------------------------------------
# augment

def test_augment_matches_explicit_per_sample_crop_and_flip() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.rand(40, 3, 8, 8, generator=g)
    p = 3
    out = augment(x, p, True, torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    dy = torch.randint(0, 2 * p + 1, (40,), generator=replay)
    dx = torch.randint(0, 2 * p + 1, (40,), generator=replay)
    flip = torch.rand(40, generator=replay) < 0.5
    for i in range(40):
        ref = TF.crop(TF.pad(x[i], [p] * 4, fill=0), int(dy[i]), int(dx[i]), 8, 8)
        if flip[i]:
            ref = TF.hflip(ref)
        assert torch.equal(out[i], ref), f"sample {i}"


@pytest.mark.parametrize("padding,hflip", [(0, False), (0, True), (2, False), (4, True)])
def test_augment_keeps_shape_dtype_device(padding: int, hflip: bool) -> None:
    x = torch.rand(7, 3, 10, 12)
    out = augment(x, padding, hflip, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device


def test_augment_without_crop_or_flip_is_identity() -> None:
    x = torch.rand(5, 2, 6, 6)
    assert torch.equal(augment(x, 0, False, torch.Generator().manual_seed(0)), x)


def test_augment_crop_is_a_window_of_the_zero_padded_image() -> None:
    """Every output is one (2p+1)^2 window of the *zero*-padded input (not reflect/replicate),
    and several different offsets occur."""
    p, n = 2, 64
    x = torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(1)) + 0.1  # no zeros inside
    out = augment(x, p, False, torch.Generator().manual_seed(2))
    padded = F.pad(x, (p,) * 4)
    offsets = set()
    for i in range(n):
        hits = [(a, b) for a in range(2 * p + 1) for b in range(2 * p + 1)
                if torch.equal(out[i], padded[i, :, a:a + 6, b:b + 6])]
        assert len(hits) == 1, f"sample {i} is not a window of the zero-padded image"
        offsets.add(hits[0])
    assert len(offsets) >= 10
    assert (out == 0).any(), "no padding ever visible"
    assert ((out == 0) | (out >= 0.1)).all()


def test_augment_flip_flips_about_half() -> None:
    n = 400
    x = torch.rand(n, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    out = augment(x, 0, True, torch.Generator().manual_seed(4))
    same = torch.tensor([torch.equal(out[i], x[i]) for i in range(n)])
    flipped = torch.tensor([torch.equal(out[i], x[i].flip(2)) for i in range(n)])
    assert bool((same ^ flipped).all())
    assert 0.4 < float(flipped.float().mean()) < 0.6


def test_augment_is_deterministic_given_a_generator() -> None:
    x = torch.rand(32, 3, 8, 8)
    a = augment(x, 4, True, torch.Generator().manual_seed(9))
    b = augment(x, 4, True, torch.Generator().manual_seed(9))
    c = augment(x, 4, True, torch.Generator().manual_seed(10))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# train_classifier determinism and resume

def _train(seed: int, init_seed: int = 0, epochs: int = 2) -> dict[str, Tensor]:
    x, y = _tiny_data(n=64)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, crop_padding=2, hflip=True)
    return _state(train_classifier(_tiny_model(init_seed), x, y, cfg, seed=seed, device="cpu", progress=False))


def test_train_classifier_is_deterministic_for_a_seed_on_cpu() -> None:
    a, b = _train(seed=4), _train(seed=4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _train(seed=5)
    assert _max_diff(a, c) > 1e-4, "a different seed should draw different batches"


def test_train_classifier_resume_matches_uninterrupted_run() -> None:
    """Stop after epoch 0, resume from the saved weights + optimiser state: same final model."""
    x, y = _tiny_data(n=64)
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05, crop_padding=2, hflip=True)
    saved: dict = {}

    def keep(epoch: int, m: nn.Module, opt: torch.optim.Optimizer) -> None:
        if epoch == 0:
            saved["model"] = _state(m)
            saved["opt"] = copy.deepcopy(opt.state_dict())

    full = _state(train_classifier(_tiny_model(0), x, y, cfg, seed=2, device="cpu", progress=False,
                                   on_epoch_end=keep))
    resumed_model = _tiny_model(0)
    resumed_model.load_state_dict(saved["model"])
    resumed = _state(train_classifier(resumed_model, x, y, cfg, seed=2, device="cpu", progress=False,
                                      start_epoch=1, optimizer_state=saved["opt"]))
    assert _max_diff(full, resumed) < 1e-6
