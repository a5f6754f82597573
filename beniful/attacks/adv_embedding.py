"""Adversarial embedding (after Tan & Shokri, "Bypassing Backdoor Detection Algorithms in Deep
Learning", EuroS&P 2020): an attacker who controls training makes the middle features of triggered
inputs look benign.

Tan & Shokri train the classifier against a discriminator on its latent representation. BeniFul
tests something narrower: whether a VAE fitted on benign features at one layer can rebuild the
feature of an input. The attacker that targets exactly that matches the *distribution* of triggered
features at a chosen ``layer`` to the benign features of the target class (the class the triggered
inputs are meant to look like), so we use that form of the loss, which is deterministic and needs no
second network:

    weight * ( mean_d (mu_T - mu_R)^2 + mean_d (sd_T - sd_R)^2 ) / mean(h_R^2)

over the feature dimensions ``d`` of each training batch, with ``T`` its triggered items and ``R`` its
benign target-class items (their features detached: the attacker moves the triggered features, not
the benign ones). The division makes the loss scale-free, so ``weight`` means the same at every layer
and width; batches without two of each are skipped. ``weight = 0`` is the BadNets attack with the
same patch. The trigger is BadNets' patch (all-to-one), so the only change is the loss.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .. import features
from .badnets import BadNets
from .registry import ATTACKS

__all__ = ["AdvEmbedding", "feature_matching_loss"]


def feature_matching_loss(h_trig: Tensor, h_ref: Tensor) -> Tensor:
    """Distance between the first two moments of two sets of features, relative to the reference's scale.

    Args:
        h_trig: features of triggered inputs, ``N x ...`` (keeps its graph).
        h_ref: benign reference features, ``M x ...`` with the same trailing shape.

    Returns:
        A scalar >= 0; 0 when both sets have the same per-dimension mean and standard deviation.

    Raises:
        ValueError: fewer than two items in either set, or unequal trailing shapes.
    """
    if len(h_trig) < 2 or len(h_ref) < 2:
        raise ValueError(f"need at least 2 items per set, got {len(h_trig)} triggered and {len(h_ref)} reference")
    if h_trig.shape[1:] != h_ref.shape[1:]:
        raise ValueError(f"feature shapes differ: {tuple(h_trig.shape[1:])} vs {tuple(h_ref.shape[1:])}")
    t, r = h_trig.float().flatten(1), h_ref.float().flatten(1)
    scale = r.pow(2).mean().clamp_min(1e-8)
    gap = (t.mean(0) - r.mean(0)).pow(2).mean() + (t.std(0) - r.std(0)).pow(2).mean()
    return gap / scale


@ATTACKS.register("adv_embedding")
class AdvEmbedding(BadNets):
    """BadNets' patch trained with a feature-matching loss at ``layer`` (see the module docstring).

    Args:
        target, rate, seed: as for every :class:`~beniful.attacks.base.Attack`.
        weight: the loss's weight (>= 0); 0 is plain BadNets with this patch. The default, 1, is the
            largest of fig5's weights (0, 1, 10, 100) at which the attacker's model kept its ACC within
            0.03 of the clean model's on both quick data sets (seed 0; Fashion-MNIST: 0.849 at 1 and
            0.803 at 10 against the clean model's 0.874; mnist5k: 0.980 at 1, 0.972 at 10, 0.928 at
            100 against 0.981): an attacker who wants an unnoticed backdoor pays no more accuracy.
        layer: the submodule whose output the attacker regularises (``"layer3"``: BeniFul's default).
        patch_size, value, position: BadNets' patch.

    Raises:
        ValueError: a negative ``weight``, an empty ``layer`` or an invalid patch.
    """

    name = "adv_embedding"

    def __init__(self, target: int = 0, rate: float = 0.1, seed: int = 0, weight: float = 1.0,
                 layer: str = "layer3", patch_size: int = 3, value: float = 1.0,
                 position: str = "bottom_right") -> None:
        super().__init__(target, rate, seed, patch_size=patch_size, value=value, position=position)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"weight must be a number >= 0, got {weight!r}")
        if not isinstance(layer, str) or not layer:
            raise ValueError(f"layer must be a submodule name such as 'layer3', got {layer!r}")
        self.weight, self.layer = float(weight), layer
        self._batch: tuple[Tensor, Tensor] | None = None

    def training_batch(self, x: Tensor, y: Tensor, poison_mask: Tensor, generator: torch.Generator | None = None
                       ) -> tuple[Tensor, Tensor, Tensor | None]:
        """BadNets' poisoning; remembers which items are triggered and which are benign target-class ones.

        Args:
            x: a float training batch in [0, 1].
            y: its labels.
            poison_mask: which items are poisoned.
            generator: unused (the patch is fixed).

        Returns:
            ``(x, y, None)``; the feature loss comes from :meth:`training_forward`.
        """
        x, y_out, _ = super().training_batch(x, y, poison_mask, generator)
        self._batch = (poison_mask, (~poison_mask) & (y == self.target))
        return x, y_out, None

    def training_forward(self, model: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor
                         ) -> tuple[Tensor, Tensor | None]:
        """The forward pass, plus ``weight`` times the feature-matching loss at ``layer``.

        Args:
            model: the classifier being trained (the hook goes on ``model.<layer>``).
            forward: what to call for the logits.
            x: the batch :meth:`training_batch` returned, augmented.

        Returns:
            ``(logits, loss)``; the loss is ``None`` at weight 0 or when the batch holds fewer than
            two triggered or two benign target-class items.
        """
        if self.weight == 0 or self._batch is None:
            return forward(x), None
        trig, ref = self._batch
        self._batch = None
        with features.capture(model, self.layer) as store:
            logits = forward(x)
        if not store:
            raise ValueError(f"layer {self.layer!r} was not called during the forward pass of {type(model).__name__}")
        if int(trig.sum()) < 2 or int(ref.sum()) < 2:
            return logits, None
        h = store[-1]
        return logits, self.weight * feature_matching_loss(h[trig], h[ref].detach())
