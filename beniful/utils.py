"""Small shared helpers: device choice, seeding, batching, input coercion, validation.

Input coercion is in one place so that every method accepts the same forms: :func:`as_tensors` for
labelled clean data (``fit``, ``repair``) and :func:`as_images` for unlabelled inputs (``score``,
``predict``, an eliminator's ``pool``). Both insist on images in [0, 1], the domain every attack,
detector and eliminator here works in.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device a method runs on.

    Args:
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda[:N]"`` or a device.

    Returns:
        The ``torch.device``.

    Raises:
        ValueError: an invalid name, or CUDA asked for where there is none.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"invalid device {device!r}; use 'auto', 'cpu' or 'cuda[:N]'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return dev


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators for the ``with`` block only.

    Model initialisation (``nn.Module`` constructors) draws from torch's global generator, so
    training a model reproducibly needs it seeded; a library must not leave the caller's stream
    changed, so the previous states are restored when the block ends (torch's through
    :func:`torch.random.fork_rng`, for the CPU and, when ``device`` is a CUDA device, that device).

    Args:
        seed: the seed for all three generators.
        device: the device the block computes on (its CUDA generator is restored too).
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


#: values this far outside [0, 1] are still accepted (float rounding of ``x / 255`` and of blends)
RANGE_TOLERANCE = 1e-4


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as the first layer of a model.

    Every method in this package perturbs, blends, amplifies or clips *images in [0, 1]*; a model
    trained on normalised inputs is used here as ``nn.Sequential(Normalize(mean, std), model)``
    and given un-normalised images.

    Args:
        mean: one value per channel (e.g. ImageNet's ``(0.485, 0.456, 0.406)``).
        std: one positive value per channel.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        m, s = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if m.ndim != 1 or m.shape != s.shape or not bool((s > 0).all()):
            raise ValueError(f"mean and std need one value per channel and std > 0; got {list(mean)} and {list(std)}")
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise a batch channel by channel.

        Args:
            x: float images in [0, 1], ``N x C x H x W`` with C = the number of means.

        Returns:
            ``(x - mean) / std``, same shape.
        """
        return (x - self.mean) / self.std


def check_images(x: object, name: str = "x") -> Tensor:
    """Validate an image batch: a float tensor ``N x C x H x W`` with values in [0, 1].

    Args:
        x: the batch.
        name: what to call it in error messages.

    Returns:
        ``x`` itself.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: wrong shape or dtype, or values outside [0, 1] (the message says to fold any
            input normalisation into the model instead).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape N x C x H x W, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if not (lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):  # also catches NaN
            raise ValueError(
                f"{name} has values in [{lo:.3g}, {hi:.3g}], but beniful's methods work on images in [0, 1] "
                f"(they blend, amplify, corrupt and clip pixels). If the model expects normalised inputs "
                f"(e.g. ImageNet mean/std), fold the normalisation into the model, "
                f"nn.Sequential(beniful.utils.Normalize(mean, std), model), and pass the un-normalised images"
            )
    return x


def _first_tensor(item: object) -> Tensor:
    """The image of one batch or sample: ``x``, ``(x,)``, ``(x, y, ...)`` or ``[x, y, ...]``."""
    if isinstance(item, (tuple, list)) and item:
        item = item[0]
    return torch.as_tensor(item)


def _as_float(x: Tensor, name: str) -> Tensor:
    """``uint8`` scaled to [0, 1]; float tensors as they are (no copy of a large pool); then checked."""
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x
    return check_images(x if x.is_floating_point() else x.float(), name)


def as_images(data: object, name: str = "x") -> Tensor:
    """Unlabelled inputs in any of the forms ``fit`` accepts, as one float image tensor.

    What ``score``, ``predict`` and an eliminator's ``pool`` accept: a tensor, a batch ``(x,)`` or
    ``(x, y)`` (the labels are ignored), a torch ``Dataset`` (items ``x``, ``(x,)`` or ``(x, y)``) or
    a ``DataLoader`` over one. ``uint8`` images are scaled to [0, 1].

    Args:
        data: the inputs.
        name: what to call them in error messages.

    Returns:
        A float tensor ``N x C x H x W`` with values in [0, 1] (``data`` itself when it already is one).

    Raises:
        TypeError: an unsupported type.
        ValueError: wrong shape or values outside [0, 1] (see :func:`check_images`).
    """
    if isinstance(data, Tensor):
        return _as_float(data, name)
    if isinstance(data, (tuple, list)) and data and isinstance(data[0], Tensor) and data[0].ndim == 4 \
            and len(data) <= 2:
        return _as_float(data[0], name)
    if hasattr(data, "tensors") and callable(getattr(data, "tensors")):
        return _as_float(data.tensors()[0], name)  # our ImageDataset
    if isinstance(data, torch.utils.data.DataLoader):
        parts = [_first_tensor(batch) for batch in data]
        if not parts:
            raise ValueError(f"{name}: the DataLoader yielded no batches")
        return _as_float(torch.cat(parts), name)
    if isinstance(data, torch.utils.data.Dataset):
        n = len(data)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError(f"{name}: the Dataset is empty")
        return _as_float(torch.stack([_first_tensor(data[i]) for i in range(n)]), name)
    raise TypeError(f"{name} must be a tensor N x C x H x W, a batch (x,) or (x, y), a torch Dataset or a "
                    f"DataLoader; got {type(data).__name__}")


def as_tensors(data: object, max_items: int | None = None) -> tuple[Tensor, Tensor]:
    """Labelled (clean) data in any accepted form as float images and long labels.

    Every detector's ``fit`` and eliminator's ``repair`` accepts a torch ``Dataset`` (items
    ``(x, y)``), a ``DataLoader`` over one, or an ``(x, y)`` tuple of tensors; they all funnel here.

    Args:
        data: the labelled data.
        max_items: keep only the first ``max_items`` samples.

    Returns:
        ``(x, y)``: float images ``N x C x H x W`` in [0, 1] (``uint8`` scaled by 1/255) and int64 labels.

    Raises:
        TypeError: an unsupported type.
        ValueError: wrong shape, mismatched lengths, or images outside [0, 1] (see :func:`check_images`).
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
    elif hasattr(data, "tensors") and callable(getattr(data, "tensors")):
        x, y = data.tensors()  # our ImageDataset
    elif isinstance(data, torch.utils.data.DataLoader):
        xs, ys = [], []
        for batch in data:
            xs.append(torch.as_tensor(batch[0]))
            ys.append(torch.as_tensor(batch[1]))
        if not xs:
            raise ValueError("clean data: the DataLoader yielded no batches")
        x, y = torch.cat(xs), torch.cat(ys)
    elif isinstance(data, torch.utils.data.Dataset):
        n = len(data)  # type: ignore[arg-type]
        items = [data[i] for i in range(n)]
        if not items:
            raise ValueError("clean data: the Dataset is empty")
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items])
    else:
        raise TypeError(
            f"clean data must be a torch Dataset, a DataLoader or a tuple (x, y) of tensors; "
            f"got {type(data).__name__}"
        )
    y = torch.as_tensor(y).long()
    if x.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} items but y has {len(y)}")
    if max_items is not None:
        x, y = x[:max_items], y[:max_items]
    return _as_float(x, "clean images").float(), y


def batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``.

    Args:
        n: number of items.
        batch_size: items per slice (the last one may be shorter).

    Returns:
        An iterator of ``slice`` objects.
    """
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def check_layer(model: nn.Module, layer: str) -> nn.Module:
    """The submodule a layer-based method reads (``"layer3"``), with a helpful error when absent.

    Args:
        model: the model.
        layer: a dotted submodule name.

    Returns:
        ``model.get_submodule(layer)``.

    Raises:
        ValueError: no such submodule; the message lists the top-level ones.
    """
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(
            f"unknown layer {layer!r} for {type(model).__name__}; top-level submodules: {', '.join(names)}"
        ) from None


def check_positive_int(value: object, name: str) -> int:
    """``value`` as an int when it is an integer >= 1 (``True`` is not one); else a ValueError naming it.

    Args:
        value: the value to check.
        name: the parameter's name, for the message.

    Returns:
        ``value``.
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_fraction(value: float, name: str, low_open: bool = True, high_open: bool = False) -> float:
    """Validate a share or rate.

    Args:
        value: the value to check.
        name: the parameter's name, for the error message.
        low_open: exclude 0.
        high_open: exclude 1.

    Returns:
        ``float(value)``.

    Raises:
        ValueError: not a number in the interval (the message shows the interval).
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok_low = number and (value > 0 if low_open else value >= 0)
    ok_high = number and (value < 1 if high_open else value <= 1)
    if not (ok_low and ok_high):
        lo = "(0" if low_open else "[0"
        hi = "1)" if high_open else "1]"
        raise ValueError(f"{name} must be in {lo}, {hi}; got {value!r}")
    return float(value)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 512, device: torch.device | None = None) -> Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched (the model's train/eval mode is restored).

    Args:
        model: the model.
        x: images.
        batch_size: images per forward pass.
        device: where to run; ``None``: the model's device.

    Returns:
        Float logits ``N x classes`` on the CPU.
    """
    device = device or model_device(model)
    was_training = model.training
    model.eval()
    out = [model(x[s].to(device)).float().cpu() for s in batches(len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter.

    Args:
        model: the model.

    Returns:
        Its device; the CPU for a model without parameters.
    """
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
