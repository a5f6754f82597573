import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from beniful import utils
from beniful.datasets import ImageDataset


def _xy(n=10):
    return torch.rand(n, 1, 8, 8), torch.arange(n) % 3


def test_as_tensors_accepts_the_three_forms():
    x, y = _xy()
    for data in ((x, y), TensorDataset(x, y), DataLoader(TensorDataset(x, y), batch_size=3)):
        xx, yy = utils.as_tensors(data)
        assert torch.equal(xx, x) and torch.equal(yy, y)


def test_as_tensors_converts_uint8_dataset():
    data = torch.randint(0, 256, (4, 1, 5, 5), dtype=torch.uint8)
    ds = ImageDataset(data, torch.zeros(4, dtype=torch.long))
    x, _ = utils.as_tensors(ds)
    assert x.dtype == torch.float32 and torch.allclose(x * 255, data.float())


def test_as_tensors_rejects_bad_inputs():
    with pytest.raises(TypeError, match="Dataset, a DataLoader or a tuple"):
        utils.as_tensors("nope")
    with pytest.raises(ValueError, match="N x C x H x W"):
        utils.as_tensors((torch.rand(3, 8), torch.zeros(3)))
    with pytest.raises(ValueError, match="3 items but y has 2"):
        utils.as_tensors((torch.rand(3, 1, 2, 2), torch.zeros(2)))


def test_check_layer_lists_submodules():
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    assert utils.check_layer(m, "0") is m[0]
    with pytest.raises(ValueError, match="unknown layer 'layer9'.*0, 1"):
        utils.check_layer(m, "layer9")


def test_resolve_device():
    assert utils.resolve_device("cpu").type == "cpu"
    assert utils.resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="invalid device"):
        utils.resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            utils.resolve_device("cuda")


@pytest.mark.parametrize("value", [0, -0.1, 1.5, float("nan")])
def test_check_fraction(value):
    with pytest.raises(ValueError, match="rate must be in"):
        utils.check_fraction(value, "rate")
