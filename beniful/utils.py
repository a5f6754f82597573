"""Small shared helpers: device choice, seeding, batching, input coercion, validation."""
from __future__ import annotations

import random
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else CPU; anything else must be a valid torch device."""
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


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for explicit sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def as_tensors(data: object, max_items: int | None = None) -> tuple[Tensor, Tensor]:
    """Turn a Dataset, a DataLoader or an ``(x, y)`` tuple into float ``x`` and long ``y`` tensors.

    The book's library guide lets every detector and eliminator accept any of the three forms; they all funnel here.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
    elif hasattr(data, "tensors") and callable(getattr(data, "tensors")):
        x, y = data.tensors()  # our ImageDataset
    elif isinstance(data, torch.utils.data.DataLoader):
        xs, ys = [], []
        for batch in data:
            xs.append(batch[0])
            ys.append(batch[1])
        x, y = torch.cat(xs), torch.cat(ys)
    elif isinstance(data, torch.utils.data.Dataset):
        n = len(data)  # type: ignore[arg-type]
        items = [data[i] for i in range(n)]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items])
    else:
        raise TypeError(
            f"clean data must be a torch Dataset, a DataLoader or a tuple (x, y) of tensors; "
            f"got {type(data).__name__}"
        )
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    x = x.float()
    y = torch.as_tensor(y).long()
    if x.ndim != 4:
        raise ValueError(f"images must be N x C x H x W, got shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} items but y has {len(y)}")
    if max_items is not None:
        x, y = x[:max_items], y[:max_items]
    return x, y


def check_images(x: object, name: str = "x") -> Tensor:
    """Validate an image batch: float tensor, N x C x H x W, values in [0, 1]."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape N x C x H x W, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    return x


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def check_layer(model: nn.Module, layer: str) -> nn.Module:
    """Return ``model.get_submodule(layer)`` or raise a ValueError listing the valid names."""
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(
            f"unknown layer {layer!r} for {type(model).__name__}; top-level submodules: {', '.join(names)}"
        ) from None


def check_fraction(value: float, name: str, low_open: bool = True, high_open: bool = False) -> float:
    """Validate ``value`` lies in (0, 1] (or the bounds asked for)."""
    ok_low = value > 0 if low_open else value >= 0
    ok_high = value < 1 if high_open else value <= 1
    if not isinstance(value, (int, float)) or not (ok_low and ok_high):
        lo = "(0" if low_open else "[0"
        hi = "1)" if high_open else "1]"
        raise ValueError(f"{name} must be in {lo}, {hi}; got {value!r}")
    return float(value)


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, batch_size: int = 512, device: torch.device | None = None) -> Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched; returned on the CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model(x[s].to(device)).float().cpu() for s in batches(len(x), batch_size)]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
