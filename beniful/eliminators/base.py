"""The eliminator interface: ``repair(model, clean) -> new model``; the argument is never modified.

Subclasses implement ``_repair(model, x, y, pool)`` on a deep copy. ``pool`` is an optional
unlabelled set of incoming inputs (BeniFul mines suspicious inputs from it); methods that do not
use it ignore it. ``wall_seconds`` records the last repair's wall time for the cost table.

The clean data and the pool are accepted in the forms of :mod:`beniful.utils` (a tensor or batch,
a torch ``Dataset``, a ``DataLoader``), always images in [0, 1]. ``params()`` is derived from the
constructor signature (:class:`~beniful.registry.Configurable`).
"""
from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..registry import Configurable
from ..utils import as_images, as_tensors, check_positive_int, resolve_device, seeded


class Eliminator(Configurable):
    """Base class: subclasses implement ``_repair`` on a deep copy of the model.

    Args:
        epochs: passes over the clean data (each method's own training loop).
        lr: learning rate.
        batch_size: clean images per step.
        device: ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``.
        seed: seed of the repair's randomness (data order, augmentation, initialisation).
        progress: show progress bars.
    """

    name: ClassVar[str] = "eliminator"
    #: where it runs and whether it shows a bar change nothing; the seed is recorded beside params()
    params_exclude: ClassVar[frozenset[str]] = frozenset({"device", "progress", "seed"})

    def __init__(self, epochs: int = 10, lr: float = 0.01, batch_size: int = 128, device: str = "auto",
                 seed: int = 0, progress: bool = False) -> None:
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        check_positive_int(batch_size, "batch_size")
        self.epochs, self.lr, self.batch_size = epochs, float(lr), batch_size
        self.device_name, self.seed, self.progress = device, seed, progress
        self.wall_seconds = float("nan")

    def repair(self, model: nn.Module, clean: Any, pool: Any = None) -> nn.Module:
        """Return a repaired copy of ``model``; ``model`` itself is never modified.

        Args:
            model: the suspect classifier (expects images in [0, 1]; fold any input normalisation
                into it, see :class:`beniful.utils.Normalize`).
            clean: the defender's labelled clean data: an ``(x, y)`` tuple, a torch ``Dataset`` or a
                ``DataLoader``.
            pool: optional unlabelled incoming inputs: a tensor, a batch ``(x,)`` / ``(x, y)``
                (labels ignored), a ``Dataset`` or a ``DataLoader``; methods that do not use it
                ignore it.

        Returns:
            The repaired model, in eval mode on the eliminator's device.

        Raises:
            TypeError: ``model`` is not a module, or data of an unsupported type.
            ValueError: images outside [0, 1] or of the wrong shape.
        """
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        x, y = as_tensors(clean)
        if pool is not None:
            pool = as_images(pool, "pool")
        self.device = resolve_device(self.device_name)
        t0 = time.time()
        fixed = copy.deepcopy(model).to(self.device)
        for p in fixed.parameters():
            p.requires_grad_(True)
        self.generator = torch.Generator().manual_seed(self.seed)
        with seeded(self.seed, self.device):  # new layers (masks, heads) start from the seed; the caller's RNG is kept
            fixed = self._repair(fixed, x, y, pool)
        fixed.eval()
        self.wall_seconds = time.time() - t0
        return fixed

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"
