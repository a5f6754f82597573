"""Model registry: PreAct-ResNet-18 (the paper profile's model, BackdoorBench's default).

The stages are named ``conv1, layer1..layer4, bn, linear`` so that ``layer="layer3"`` means the
same thing to every detector and eliminator. ``width`` scales all channels (64 = the standard
model, 8 or 16 = the quick profile's narrow one); ``in_channels`` lets it read grayscale digits.
"""
from __future__ import annotations

from typing import Any, Callable

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name, e.g. ``build("preact_resnet18", num_classes=10, in_channels=1, width=16)``.

    Args:
        name: one of :func:`available` (``-`` and ``_`` are interchangeable).
        **kwargs: the architecture's parameters (``num_classes``, ``in_channels``, ``width``).

    Returns:
        A freshly initialised model.
    """
    return MODELS.build(name, **kwargs)


def available() -> list[str]:
    """Registered architecture names.

    Returns:
        Sorted names, e.g. ``["preact_resnet18"]``.
    """
    return MODELS.available()


class PreActBlock(nn.Module):
    """Pre-activation basic block (He et al., 2016, 'Identity Mappings in Deep Residual Networks')."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """BN-ReLU-conv twice, plus the identity (or the 1x1 projection of the activated input).

        Args:
            x: feature maps, ``N x in_planes x H x W``.

        Returns:
            ``N x planes x H / stride x W / stride`` (rounded up).
        """
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreActResNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, ...], num_classes: int = 10, in_channels: int = 3, width: int = 64) -> None:
        super().__init__()
        for name, v in (("num_classes", num_classes), ("in_channels", in_channels), ("width", width)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.num_classes, self.in_channels, self.width = num_classes, in_channels, width
        self.in_planes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.layer1 = self._stage(width, num_blocks[0], 1)
        self.layer2 = self._stage(2 * width, num_blocks[1], 2)
        self.layer3 = self._stage(4 * width, num_blocks[2], 2)
        self.layer4 = self._stage(8 * width, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(8 * width)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(8 * width, num_classes)

    def _stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of a batch of images.

        Args:
            x: float images ``N x in_channels x H x W`` (pixels in [0, 1] throughout this package).

        Returns:
            Logits, ``N x num_classes``.
        """
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = self.flatten(self.avgpool(self.relu(self.bn(out))))
        return self.linear(out)


@MODELS.register("preact_resnet18")
def preact_resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> PreActResNet:
    """PreAct-ResNet-18; ``width=64`` is the standard 11M-parameter model.

    Args:
        num_classes: outputs of the last layer.
        in_channels: image channels (1 for digits, 3 for colour images).
        width: channels of the first stage (the others are 2x, 4x and 8x it).

    Returns:
        The initialised model.
    """
    return PreActResNet((2, 2, 2, 2), num_classes, in_channels, width)
