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


# ------------------------------------------------------------------------------------------ unlabelled inputs


@pytest.mark.parametrize("form", ["tensor", "x_tuple", "xy_tuple", "xy_list", "dataset_x", "dataset_xy",
                                  "loader_x", "loader_xy", "image_dataset", "uint8"])
def test_as_images_accepts_every_layout(form):
    x, y = _xy()
    u8 = (x * 255).round().to(torch.uint8)
    data = {
        "tensor": x, "x_tuple": (x,), "xy_tuple": (x, y), "xy_list": [x, y],
        "dataset_x": TensorDataset(x), "dataset_xy": TensorDataset(x, y),
        "loader_x": DataLoader(TensorDataset(x), batch_size=3), "loader_xy": DataLoader(TensorDataset(x, y), batch_size=4),
        "image_dataset": ImageDataset(u8, y), "uint8": u8,
    }[form]
    out = utils.as_images(data)
    expected = u8.float() / 255 if form in ("image_dataset", "uint8") else x
    assert out.dtype == torch.float32 and torch.equal(out, expected)


def test_as_images_returns_a_float_tensor_itself_without_copying():
    x, _ = _xy()
    assert utils.as_images(x) is x


def test_as_images_rejects_bad_inputs():
    with pytest.raises(TypeError, match="tensor N x C x H x W, a batch"):
        utils.as_images("nope")
    with pytest.raises(ValueError, match="N x C x H x W"):
        utils.as_images(torch.rand(3, 8))
    with pytest.raises(ValueError, match="no batches"):
        utils.as_images(DataLoader(TensorDataset(torch.rand(0, 1, 2, 2)), batch_size=2))


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _normalised(n=6):
    x = torch.rand(n, 3, 8, 8)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    return x, (x - mean) / std


@pytest.mark.parametrize("fn", [utils.check_images, utils.as_images, lambda x: utils.as_tensors((x, torch.zeros(len(x))))])
def test_out_of_range_images_say_to_fold_the_normalisation_into_the_model(fn):
    _, xn = _normalised()
    with pytest.raises(ValueError) as err:
        fn(xn)
    msg = str(err.value)
    assert "[0, 1]" in msg and "fold the normalisation into the model" in msg and "Normalize(mean, std)" in msg
    assert f"{float(xn.min()):.3g}" in msg  # names the bad values


@pytest.mark.parametrize("bad", [1.01, -0.01, float("nan")])
def test_check_images_range(bad):
    x = torch.rand(2, 1, 4, 4)
    x[1, 0, 2, 2] = bad
    with pytest.raises(ValueError, match="values in"):
        utils.check_images(x)
    x[1, 0, 2, 2] = 1 + 1e-6  # float rounding of x / 255 and of blends
    assert utils.check_images(x) is x
    assert utils.check_images(torch.empty(0, 1, 4, 4)).shape == (0, 1, 4, 4)


def test_normalize_folds_the_preprocessing_into_the_model():
    x, xn = _normalised()
    norm = utils.Normalize(*IMAGENET)
    assert torch.allclose(norm(x), xn, atol=1e-6)
    model = torch.nn.Sequential(norm, torch.nn.Conv2d(3, 2, 3))
    assert model(utils.as_images(x)).shape == (6, 2, 6, 6)
    assert set(dict(norm.named_buffers())) == {"mean", "std"}  # moves with .to(device), saved with the model
    with pytest.raises(ValueError, match="one value per channel and std > 0"):
        utils.Normalize((0.5, 0.5), (0.2,))
    with pytest.raises(ValueError, match="std > 0"):
        utils.Normalize((0.5,), (0.0,))


def test_check_fraction_rejects_non_numbers_with_a_value_error():
    for bad in ("0.1", None, True):
        with pytest.raises(ValueError, match="rate must be in"):
            utils.check_fraction(bad, "rate")  # type: ignore[arg-type]


def test_seeded_restores_the_callers_random_streams():
    import random

    import numpy as np

    from beniful.utils import seeded

    def draws():
        return torch.rand(3), np.random.rand(2), random.random()

    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    expected = draws()
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    with seeded(123):
        inside = torch.rand(3)
    with seeded(123):
        assert torch.equal(torch.rand(3), inside)  # the block is reproducible
    after = draws()
    assert torch.equal(after[0], expected[0]) and np.array_equal(after[1], expected[1]) and after[2] == expected[2]


def test_a_repair_leaves_the_global_generator_alone():
    from beniful import eliminators

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = torch.rand(16, 1, 8, 8)
    model(x)
    y = torch.arange(16) % 2
    torch.manual_seed(9)
    expected = torch.rand(4)
    torch.manual_seed(9)
    eliminators.build("ft", epochs=1, device="cpu", seed=3).repair(model, (x, y))
    assert torch.equal(torch.rand(4), expected)
