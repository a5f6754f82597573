"""Fixtures shared across test folders."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch

from beniful import attacks, models, sources
from beniful.datasets import ImageDataset
from beniful.training import TrainConfig, train_classifier
from beniful.case import defender_split
from beniful.zoo import TrainedModel


@pytest.fixture(scope="session")
def tiny_badnets_tm() -> TrainedModel:
    """A BadNets-poisoned width-2 PreAct-ResNet-18 trained one epoch on random 28x28 digit-shaped
    data: enough structure for the evaluation and benchmark plumbing, seconds to build."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(1200) % 10
    x = torch.randint(0, 256, (1200, 1, 28, 28), generator=g, dtype=torch.uint8)
    train = ImageDataset(x[:1000], y[:1000], "mnist5k", [str(i) for i in range(10)])
    test = ImageDataset(x[1000:], y[1000:], "mnist5k", [str(i) for i in range(10)])
    atk = attacks.build("badnets", target=0, rate=0.1, seed=0).setup((1, 28, 28))
    pidx = atk.poison_indices(train.targets)
    torch.manual_seed(0)
    model = models.build("preact_resnet18", num_classes=10, in_channels=1, width=2)
    train_classifier(model, train.data, train.targets, TrainConfig(epochs=1, batch_size=128, lr=0.05),
                     attack=atk, poison_idx=pidx, device="cpu", progress=False)
    clean = defender_split(train, 0.05, 0)
    return TrainedModel(model=model.eval(), attack=atk, test=test, clean=clean, train=train, poisoned=pidx, seed=0,
                        labels={"dataset": "mnist5k", "profile": "quick", "device": "cpu"}, key="tiny")


@pytest.fixture
def edited_package(tmp_path: Path) -> Callable[..., Path]:
    """``edited_package(edits, folder)``: a copy of the package's source in ``tmp_path / folder`` with
    ``edits`` (file -> text) appended, for pointing ``sources.PACKAGE_ROOT`` at real changed bytes."""

    def make(edits: dict[str, str], folder: str = "copy") -> Path:
        root = tmp_path / folder / "beniful"
        shutil.copytree(sources.PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
        for name, text in edits.items():
            with (root / name).open("a") as f:
                f.write(text)
        return root

    return make
