"""The memory budget: how many bytes one step of a method may hold on its device at once.

Every method here works in batches, but some steps used to hold a whole data set's worth of
something at once: the BeniFul detector's VAE fit kept every clean middle feature on the device
(Tiny ImageNet, layer3 of a PreAct-ResNet-18: 17,500 augmented maps of 256 x 16 x 16, 4.6 GB per
copy), STRIP scored 4,096 superimposed images per forward pass. This module is the one place that
says how much a step may take, so each method sizes its batches from the same number:

- :func:`memory_budget` is the budget in bytes. In order: an explicit value (a method's
  ``memory_budget`` parameter), the environment variable ``BENIFUL_MEMORY_BUDGET``, else the
  default for the device: ``CUDA_FREE_FRACTION`` of the memory the CUDA device has free (what
  the driver reports free plus what PyTorch's caching allocator holds unused), or
  ``CPU_BUDGET_BYTES`` on the CPU (host memory is shared with everything else on the machine, so
  a fixed number rather than a share of whatever happens to be free).
- :func:`items_that_fit` turns a per-item size into a batch size, capped by the method's own
  batch size so that nothing changes when everything fits.
- :func:`forward_item_bytes` estimates what one input costs in a forward pass of a model (probed
  once on one input), for methods that run the model on many derived inputs (STRIP's blends,
  SCALE-UP's amplified copies, TeCo's corruptions).

Values may be written as bytes (``2147483648``, ``2e9``) or with a unit (``"512MiB"``, ``"2GB"``,
``"1.5GiB"``; ``K``, ``M``, ``G``, ``T`` are powers of 1000 with or without ``B``, ``Ki``, ``Mi``,
``Gi``, ``Ti`` powers of 1024).
"""
from __future__ import annotations

import math
import os
import re

import torch
from torch import Tensor, nn

__all__ = ["ENV_VAR", "CUDA_FREE_FRACTION", "CPU_BUDGET_BYTES", "ACTIVATION_FACTOR", "parse_bytes",
           "memory_budget", "items_that_fit", "tensor_bytes", "forward_item_bytes"]

#: environment variable that overrides the default budget (any form :func:`parse_bytes` reads)
ENV_VAR = "BENIFUL_MEMORY_BUDGET"
#: the share of a CUDA device's free memory that one step may take; the rest is left for the model,
#: the optimiser, the training set held on the device, fragmentation and other processes
CUDA_FREE_FRACTION = 0.5
#: the budget on the CPU in bytes, 2 GiB, which is enough for every step of the quick profile at
#: its historical batch sizes and small enough for a laptop
CPU_BUDGET_BYTES = 2 * 2**30
#: a forward pass without gradients holds about this many of its largest activation at once
#: (the layer's input and output, a residual branch, a normalisation temporary)
ACTIVATION_FACTOR = 4

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20,
          "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """A byte count from a number or a string with a unit.

    Args:
        value: bytes as a number (``2e9``) or a string such as ``"2147483648"``, ``"512MiB"``, ``"2 GB"``.

    Returns:
        The number of bytes, a positive integer.

    Raises:
        ValueError: not a positive finite amount, or an unknown unit (the message lists the valid ones).
    """
    if isinstance(value, bool):
        raise ValueError(f"a memory budget must be a number of bytes or a string like '2GiB', got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", value)
        if m is None:
            raise ValueError(f"cannot read memory budget {value!r}; write bytes ('2147483648') or a "
                             f"number with a unit ('512MiB', '2GB')")
        number, unit = float(m.group(1)), m.group(2).lower()
    else:
        raise ValueError(f"a memory budget must be a number of bytes or a string like '2GiB', got {value!r}")
    if unit not in _UNITS:
        raise ValueError(f"unknown unit {unit!r} in memory budget {value!r}; valid units: "
                         f"{', '.join(u for u in _UNITS if u)}")
    total = number * _UNITS[unit]
    if not math.isfinite(total) or total < 1:
        raise ValueError(f"a memory budget must be at least 1 byte, got {value!r}")
    return int(total)


def _cuda_free(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return int(free + max(0, cached))


def memory_budget(device: torch.device | str | None = None, budget: int | float | str | None = None) -> int:
    """Bytes one step may hold on ``device`` (see the module docstring for the order of sources).

    Args:
        device: where the step runs; ``None`` means the CPU.
        budget: an explicit budget (wins over the environment and the default).

    Returns:
        The budget in bytes.

    Raises:
        ValueError: an unreadable explicit or ``BENIFUL_MEMORY_BUDGET`` value.
    """
    if budget is not None:
        return parse_bytes(budget)
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            return parse_bytes(env)
        except ValueError as exc:
            raise ValueError(f"environment variable {ENV_VAR}: {exc}") from None
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return max(1, int(CUDA_FREE_FRACTION * _cuda_free(dev)))
    return CPU_BUDGET_BYTES


def items_that_fit(item_bytes: int | float, budget: int, cap: int | None = None) -> int:
    """How many items of ``item_bytes`` each fit in ``budget`` (at least 1, at most ``cap``).

    Args:
        item_bytes: what one item costs.
        budget: the bytes available (:func:`memory_budget`).
        cap: the method's own batch size; the result never exceeds it, so a step whose batch
            fits computes exactly what it computed before there was a budget.

    Returns:
        The batch size.
    """
    n = int(budget // max(1.0, float(item_bytes)))
    n = max(1, n)
    return min(n, cap) if cap is not None else n


def tensor_bytes(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a tensor of ``shape`` and ``dtype``.

    Args:
        shape: the tensor's shape (one item's shape gives the per-item size).
        dtype: its element type.

    Returns:
        The size in bytes.
    """
    return math.prod(int(s) for s in shape) * torch.empty(0, dtype=dtype).element_size()


@torch.no_grad()
def forward_item_bytes(model: nn.Module, sample: Tensor) -> int:
    """Estimated device bytes one input costs in a forward pass of ``model`` without gradients.

    One input is run with a hook on every leaf module; the estimate is ``ACTIVATION_FACTOR`` times
    the largest output a leaf produces plus the input itself. Activations are freed as the pass
    goes, so the peak is a few of the largest maps, not their sum.

    Args:
        model: the model (in the mode it is used in).
        sample: inputs of the shape the model is used on; only ``sample[:1]`` runs.

    Returns:
        Bytes per input (at least the input's own size).
    """
    largest = [0]

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        if isinstance(out, Tensor):
            largest[0] = max(largest[0], out[:1].numel() * out.element_size())

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        model(sample[:1])
    finally:
        for h in handles:
            h.remove()
    one = sample[:1].numel() * max(4, sample.element_size())
    return int(ACTIVATION_FACTOR * largest[0] + one)
