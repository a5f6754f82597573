"""The eliminator interface: ``repair(model, clean) -> new model``; the argument is never modified.

Subclasses implement ``_repair(model, x, y, pool)`` on a deep copy. ``pool`` is an optional
unlabelled set of incoming inputs (BeniFul mines suspicious inputs from it); methods that do not
use it ignore it. ``wall_seconds`` records the last repair's wall time for the cost table.

The clean data and the pool are accepted in the forms of :mod:`beniful.utils` (a tensor or batch,
a torch ``Dataset``, a ``DataLoader``), always images in [0, 1]. ``params()`` is derived from the
constructor signature (:class:`~beniful.registry.Configurable`).

What a method uses, for the tables that compare methods on equal terms: ``uses_pool`` says whether
it reads the unlabelled incoming pool (information beyond the defender's clean data), and
:meth:`Eliminator.optimisation_steps` / :meth:`Eliminator.clean_epochs` count the work a repair does
for given clean and pool sizes, without running it.
"""
from __future__ import annotations

import copy
import time
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..registry import Configurable
from ..training import use_nhwc
from ..utils import as_images, as_tensors, check_positive_int, resolve_device, seeded


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimisation steps of one shuffled pass over ``n`` images in batches of ``batch_size``.

    The package's training loops skip a last batch of one image (BatchNorm cannot normalise it in
    train mode), so it is not counted.

    Args:
        n: images in the pass, >= 0.
        batch_size: images per step, >= 1.

    Returns:
        ``n // batch_size`` plus one for a last partial batch of at least 2 images; 0 when ``n < 2``.
    """
    if n < 2:
        return 0
    return n // batch_size + (1 if n % batch_size >= 2 else 0)


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
    #: whether the repair reads the unlabelled incoming pool (BeniFul, ``ft_pool``); methods that
    #: only use the defender's clean data say ``False``
    uses_pool: ClassVar[bool] = False

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
        # NHWC where it is measured safe and faster (beniful.training.use_nhwc: CUDA is left as it was;
        # on the CPU single-channel images on one thread); the caller gets its layout back below
        if self.device.type == "cpu" and use_nhwc(self.device, tuple(x.shape[1:])):
            fixed = fixed.to(memory_format=torch.channels_last)
        for p in fixed.parameters():
            p.requires_grad_(True)
        self.generator = torch.Generator().manual_seed(self.seed)
        with seeded(self.seed, self.device):  # new layers (masks, heads) start from the seed; the caller's RNG is kept
            fixed = self._repair(fixed, x, y, pool)
        fixed.eval().to(memory_format=torch.contiguous_format)  # the caller gets the layout it gave
        self.wall_seconds = time.time() - t0
        return fixed

    def _repair(self, model: nn.Module, x: Tensor, y: Tensor, pool: Tensor | None) -> nn.Module:
        raise NotImplementedError

    def optimisation_steps(self, n_clean: int, n_pool: int = 0) -> int:
        """Parameter updates one repair makes, counted from the settings (nothing is run).

        The default is the fine-tuning loop's: ``epochs`` shuffled passes over the clean data
        (``steps_per_epoch``); methods with another loop override it and say what they count.

        Args:
            n_clean: the defender's clean images.
            n_pool: the incoming pool's size (read by methods whose work depends on it).

        Returns:
            The number of optimiser steps.
        """
        return self.epochs * steps_per_epoch(n_clean, self.batch_size)

    def clean_epochs(self, n_clean: int) -> float:
        """Passes over the clean data one repair makes (or the method's equivalent, see overrides).

        Args:
            n_clean: the defender's clean images.

        Returns:
            ``epochs`` here; a float where a method draws batches with replacement.
        """
        return float(self.epochs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"
