"""The attack interface shared by the five poisoning attacks.

An attack is a *trigger function* ``apply(x)`` plus a *poisoning policy*: which training indices
are poisoned (``poison_indices``) and what their labels become (``poison_labels``). The trainer
never stores a poisoned copy of the data: it keeps the poisoned indices and calls
``training_batch`` per batch, which is also where attacks that learn their trigger (IAD) or that
add noise samples (WaNet) do their per-batch work. Two hooks serve the adaptive attacks, which
know the defense: ``cover_indices`` names training samples that carry a trigger but keep their
label (Qi et al.'s cover samples; the trainer passes them to ``training_batch`` as ``cover_mask``),
and ``training_forward`` runs the classifier's forward pass, so an attacker who controls training
can add a loss on the model's middle features (adversarial embedding).

``params()`` (the trigger's parameters) is derived from the constructor signature
(:class:`~beniful.registry.Configurable`); ``config()`` adds the poisoning policy (target, rate,
seed) and is what cache keys and result tables record.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from torch import Tensor, nn

from ..registry import Configurable
from ..utils import check_fraction, check_images


class Attack(Configurable):
    """Base class. Subclasses implement ``_make(shape, device)`` (build the fixed trigger) and ``_apply``.

    Args:
        target: the backdoor's target class.
        rate: share of the training set to poison, in (0, 1).
        seed: seed of the poisoned indices.
    """

    name: ClassVar[str] = "attack"
    #: clean-label attacks poison only target-class samples and keep every label
    clean_label: ClassVar[bool] = False
    #: attacks with a trigger generator trained alongside the classifier
    trainable: ClassVar[bool] = False
    #: the poisoning policy, recorded by :meth:`config` beside the trigger's params()
    params_exclude: ClassVar[frozenset[str]] = frozenset({"target", "rate", "seed"})
    #: bumped when an attack's code changes what it trains (``None``: never); part of :meth:`config`,
    #: so models trained by older code are never served from the cache
    VERSION: ClassVar[int | None] = None

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0) -> None:
        if not isinstance(target, int) or isinstance(target, bool) or target < 0:
            raise ValueError(f"target must be a non-negative class index, got {target!r}")
        self.target = target
        self.rate = check_fraction(rate, "rate", low_open=True, high_open=True)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self._shape: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict[str, Any]:
        """Everything that defines the attack, for cache keys and result tables.

        Returns:
            ``{"name", "target", "rate", "seed"}``, ``"version"`` when the class has a ``VERSION``,
            and the trigger's ``params()``.
        """
        out: dict[str, Any] = {"name": self.name, "target": self.target, "rate": self.rate, "seed": self.seed}
        if self.VERSION is not None:
            out["version"] = self.VERSION
        return {**out, **self.params()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ trigger
    def setup(self, shape: tuple[int, int, int], device: torch.device | str = "cpu") -> "Attack":
        """Build the trigger for images of ``shape`` (deterministic in the attack's parameters).

        Args:
            shape: ``(C, H, W)``.
            device: where to keep the trigger tensors.

        Returns:
            ``self``.
        """
        shape = tuple(int(s) for s in shape)  # type: ignore[assignment]
        if len(shape) != 3:
            raise ValueError(f"shape must be (C, H, W), got {shape}")
        if self._shape != shape:
            self._shape = shape  # type: ignore[assignment]
            self._make(shape, torch.device("cpu"))
        self.to(device)
        return self

    def _make(self, shape: tuple[int, int, int], device: torch.device) -> None:
        """Build fixed trigger tensors for ``shape`` (override)."""

    def to(self, device: torch.device | str) -> "Attack":
        """Move the trigger tensors (every Tensor attribute) to ``device``.

        Args:
            device: the target device.

        Returns:
            ``self``.
        """
        for k, v in list(vars(self).items()):
            if isinstance(v, Tensor):
                setattr(self, k, v.to(device))
        return self

    def apply(self, x: Tensor) -> Tensor:
        """Stamp the trigger on a batch.

        Args:
            x: float images ``N x C x H x W`` in [0, 1].

        Returns:
            The triggered copy, of the same shape, with values in [0, 1].

        Raises:
            ValueError: images outside [0, 1], or of another shape than the trigger was built for.
        """
        check_images(x)
        shape = tuple(x.shape[1:])
        if self._shape is not None and shape != self._shape:
            raise ValueError(f"{self.name}: trigger was built for images {self._shape}, got {shape}")
        self.setup(shape, x.device)  # type: ignore[arg-type]
        with torch.no_grad():
            out = self._apply(x)
        return out.clamp(0, 1)

    def _apply(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ poisoning policy
    def poison_indices(self, y: Tensor) -> Tensor:
        """The training samples to poison, drawn with ``seed``.

        All-to-one: ``round(rate * N)`` samples among those whose label is not the target.
        Clean-label: up to ``round(rate * N)`` samples among those whose label *is* the target.

        Args:
            y: the training labels.

        Returns:
            Sorted int64 indices.
        """
        y = torch.as_tensor(y).cpu()
        n = int(round(self.rate * len(y)))
        pool = torch.nonzero((y == self.target) if self.clean_label else (y != self.target)).flatten()
        if len(pool) == 0:
            raise ValueError(f"{self.name}: no candidate samples to poison for target {self.target}")
        g = torch.Generator().manual_seed(self.seed)
        chosen = pool[torch.randperm(len(pool), generator=g)[: min(n, len(pool))]]
        return torch.sort(chosen).values

    def poison_labels(self, y: Tensor) -> Tensor:
        """Labels of poisoned samples.

        Args:
            y: their true labels.

        Returns:
            The target (all-to-one) or ``y`` unchanged (clean-label), as a new tensor.
        """
        return y.clone() if self.clean_label else torch.full_like(y, self.target)

    def cover_indices(self, y: Tensor) -> Tensor:
        """Training samples that carry a trigger but keep their true label (none by default).

        Cover samples (Qi et al., ICLR 2023) teach the model that a partial trigger alone is not
        the backdoor, which keeps triggered and benign features close. The trainer marks them in the
        ``cover_mask`` it passes to :meth:`training_batch`; they never overlap the poisoned indices.

        Args:
            y: the training labels.

        Returns:
            Sorted int64 indices; empty for attacks without cover samples.
        """
        return torch.zeros(0, dtype=torch.long)

    def training_forward(self, model: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor
                         ) -> tuple[Tensor, Tensor | None]:
        """The classifier's forward pass on one (poisoned, augmented) training batch.

        The default is ``forward(x)`` alone. An attacker who controls training overrides it to read
        the middle features of the same pass (a hook on a submodule of ``model``) and returns a loss
        on them, e.g. :class:`~beniful.attacks.adv_embedding.AdvEmbedding`.

        Args:
            model: the classifier being trained (for hooks on its submodules).
            forward: what to call for the logits (``model`` itself, or its compiled version).
            x: the batch, in the order :meth:`training_batch` returned it.

        Returns:
            ``(logits, extra_loss)``; ``extra_loss`` is added to the cross-entropy, or ``None``.
        """
        return forward(x), None

    def training_batch(
        self, x: Tensor, y: Tensor, poison_mask: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Poison one training batch (before augmentation).

        Args:
            x: the batch's images in [0, 1].
            y: their labels.
            poison_mask: marks the batch items whose dataset index is poisoned.
            generator: the trainer's generator, for any per-batch randomness.

        Returns:
            ``(x, y, extra_loss)``; ``extra_loss`` is an additional differentiable loss (e.g. IAD's
            diversity loss) or ``None``.
        """
        if poison_mask.any():
            x = x.clone()
            y = y.clone()
            x[poison_mask] = self.apply(x[poison_mask])
            y[poison_mask] = self.poison_labels(y[poison_mask])
        return x, y, None

    # ------------------------------------------------------------------ trainable attacks
    def parameters(self) -> list[torch.nn.Parameter]:
        """Trainable trigger parameters (IAD's generators).

        Returns:
            The parameters; empty for fixed triggers.
        """
        return []

    def begin_training(self, x_train: Tensor, y_train: Tensor, device: torch.device, progress: bool = False) -> None:
        """Called once before the classifier is trained (e.g. IAD's mask-generator pre-training).

        Args:
            x_train: the training images as the training loop holds them: ``uint8`` (0..255) or
                float in [0, 1]. An override converts batch by batch; a float copy of a ``uint8``
                training set would take four times its memory on the device.
            y_train: their labels.
            device: the training device.
            progress: show progress bars.
        """
        self.setup(tuple(x_train.shape[1:]), device)  # type: ignore[arg-type]

    def end_epoch(self, epoch: int) -> None:
        """Called after every training epoch (e.g. a learning-rate step of a trigger generator).

        Args:
            epoch: the epoch just finished (0-based).
        """

    def train_mode(self, training: bool) -> None:
        """Switch trainable trigger networks between train and eval mode.

        Args:
            training: ``True`` for train mode.
        """

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors needed to rebuild a *trained* trigger exactly (cached with the model).

        Returns:
            ``{name: tensor}``; empty for fixed triggers (rebuilt from the parameters).
        """
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore a trained trigger from :meth:`state_dict`.

        Args:
            state: the tensors.

        Raises:
            ValueError: a fixed-trigger attack was given state.
        """
        if state:
            raise ValueError(f"{self.name} has no trainable state, got keys {sorted(state)}")

    # ------------------------------------------------------------------ evaluation
    def asr_inputs(self, x: Tensor, y: Tensor) -> Tensor:
        """The attack-success-rate population.

        Args:
            x: test images in [0, 1].
            y: their labels.

        Returns:
            Triggered copies of the images whose true class is not the target.
        """
        keep = y != self.target
        return self.apply(x[keep])
