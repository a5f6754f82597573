import pytest
import torch

from beniful import models


@pytest.mark.parametrize("in_channels,size", [(1, 28), (3, 32), (3, 64)])
def test_preact_resnet18_shapes(in_channels, size):
    m = models.build("preact_resnet18", num_classes=7, in_channels=in_channels, width=4).eval()
    out = m(torch.rand(2, in_channels, size, size))
    assert out.shape == (2, 7)


def test_stage_names_and_widths():
    m = models.build("preact_resnet18", num_classes=10, in_channels=1, width=8)
    feats = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        m.get_submodule(name).register_forward_hook(lambda mod, i, o, n=name: feats.__setitem__(n, o.shape))
    m.eval()(torch.rand(1, 1, 28, 28))
    assert feats["layer1"][1:] == (8, 28, 28)
    assert feats["layer2"][1:] == (16, 14, 14)
    assert feats["layer3"][1:] == (32, 7, 7)
    assert feats["layer4"][1:] == (64, 4, 4)


def test_standard_width_parameter_count():
    # the standard PreAct-ResNet-18 on CIFAR-10 has about 11.17M parameters
    m = models.build("preact_resnet18", num_classes=10, in_channels=3, width=64)
    n = sum(p.numel() for p in m.parameters())
    assert 11.0e6 < n < 11.3e6


@pytest.mark.parametrize("bad", [{"width": 0}, {"num_classes": -1}, {"in_channels": 1.5}])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        models.build("preact_resnet18", **bad)
