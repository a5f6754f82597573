"""CUDA paths (skipped without a GPU; run on a CUDA machine with ``pytest tests/test_gpu.py``).

CI has no GPU, so these are the checks a user with one runs first: training with bf16 autocast and
channels_last, every detector and every eliminator with ``device="cuda"`` on a model that lives on
the CPU (the notebooks hand models from the cache to the defenses that way), results back on the
CPU, and the defended model still usable where the caller's data lives.
"""
from __future__ import annotations

import copy

import pytest
import torch

from beniful import attacks, detectors, eliminators, models
from beniful.training import TrainConfig, evaluate, train_classifier

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# small budgets: these test the device plumbing, the planted-case tests elsewhere test the methods
DETECTOR_KWARGS = {
    "autoencoder": {"steps": 20},
    "beniful": {"vae_epochs": 3},
    "strip": {"n_overlays": 8},
    "scale_up": {},
    "ibd_psc": {},
    "teco": {},
}
ELIMINATOR_KWARGS = {
    "beniful": {"epochs": 2},
    "ft": {"epochs": 1},
    "fp": {"epochs": 1},
    "nad": {"teacher_epochs": 1, "epochs": 1},
    "anp": {"iterations": 20},
    "ibau": {"rounds": 1},
    "ft_pool": {"epochs": 1},
}


def test_training_on_cuda_uses_the_device_and_learns_the_trigger(tiny_badnets_tm) -> None:
    tm = tiny_badnets_tm
    torch.manual_seed(0)
    model = models.build("preact_resnet18", num_classes=10, in_channels=1, width=4)
    atk = attacks.build("badnets", target=0, rate=0.1, seed=0).setup((1, 28, 28))
    pidx = atk.poison_indices(tm.train.targets)
    train_classifier(model, tm.train.data, tm.train.targets, TrainConfig(epochs=6, batch_size=128, lr=0.05),
                     attack=atk, poison_idx=pidx, device="cuda", progress=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    x, y = tm.test.tensors()
    m = evaluate(model, x, y, atk)
    # random images carry no class signal, but a 4x4 patch on 10 % of them is easy to learn
    assert m["asr"] >= 0.8, m


@pytest.mark.parametrize("name", sorted(DETECTOR_KWARGS))
def test_detector_runs_on_cuda(name: str, tiny_badnets_tm) -> None:
    tm = tiny_badnets_tm
    if name not in detectors.available():
        pytest.skip(f"{name} is not registered")
    model = copy.deepcopy(tm.model)  # a detector holds the model it guards on its own device
    det = detectors.build(name, device="cuda", seed=0, **DETECTOR_KWARGS[name]).fit(model, tm.clean)
    assert next(det.model.parameters()).device.type == "cuda"
    x, y = tm.test.tensors()
    x = x[:64]
    s = det.score(x)
    assert s.shape == (64,) and s.device.type == "cpu" and torch.isfinite(s).all()
    flags = det.predict(x)
    assert flags.shape == (64,) and flags.dtype == torch.bool


@pytest.mark.parametrize("name", sorted(ELIMINATOR_KWARGS))
def test_eliminator_runs_on_cuda(name: str, tiny_badnets_tm) -> None:
    tm = tiny_badnets_tm
    if name not in eliminators.available():
        pytest.skip(f"{name} is not registered")
    x, y = tm.test.tensors()
    elim = eliminators.build(name, device="cuda", seed=0, **ELIMINATOR_KWARGS[name])
    fixed = elim.repair(tm.model, tm.clean, pool=x[:100] if name in ("beniful", "ft_pool") else None)
    dev = next(fixed.parameters()).device
    with torch.no_grad():
        out = fixed.eval()(x[:32].to(dev))
    assert out.shape == (32, 10) and torch.isfinite(out).all()
    # the repair works on a copy: the caller's model stays where it was
    assert next(tm.model.parameters()).device.type == "cpu"
