"""Fixtures shared across test folders."""
from __future__ import annotations

import pytest
import torch

from beniful import attacks, models
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
    clean = defender_split(train, pidx, 0.05, 0)
    return TrainedModel(model=model.eval(), attack=atk, test=test, clean=clean, train=train, poisoned=pidx, seed=0,
                        labels={"dataset": "mnist5k", "profile": "quick", "device": "cpu"}, key="tiny")
