"""Middle features of *any* ``nn.Module``: read ``h(x)`` and run the rest of the network on a substitute.

BeniFul (Li et al., 2024, arXiv 2410.14723) writes the classifier as ``f = g(h(x))`` with ``h`` the
output of a middle layer. Detection needs ``h(x)`` and ``g(h_hat(x))`` for a reconstructed feature
``h_hat``; elimination needs ``h`` with gradients. Neither may assume the model is one of ours, so
everything here works through forward hooks on a submodule named as ``model.get_submodule`` takes it:

- :func:`extract` captures the layer's output and stops the forward pass there (a *partial* pass:
  nothing after the layer is computed).
- :func:`run_substituted` runs the whole network but replaces the layer's output by a given tensor,
  i.e. computes ``g(h_sub)`` for a model whose tail we cannot call directly.
- :func:`forward_with_reconstruction` computes ``f(x)``, ``h(x)`` and ``g(rebuild(h(x)))`` with
  *one* pass through the front of the network: inside the hook the batch of features is doubled
  (original + rebuilt), so the tail runs on ``2N`` items. This holds whenever the tail treats batch
  items independently (eval mode) and no skip connection jumps over the hooked layer; callers check
  that once with :func:`batched_tail_ok` and otherwise fall back to two passes.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from .utils import check_layer

__all__ = ["extract", "run_substituted", "forward_with_reconstruction", "batched_tail_ok", "capture", "tail_fraction"]


class _Stop(Exception):
    """Raised inside a hook to end a forward pass early once the middle feature is captured."""


def _first_tensor(out: object, layer: str) -> Tensor:
    if isinstance(out, Tensor):
        return out
    raise ValueError(f"layer {layer!r} returns {type(out).__name__}, not a tensor; pick a layer whose output is one tensor")


@contextmanager
def capture(model: nn.Module, layer: str) -> Iterator[list[Tensor]]:
    """Context manager: every forward pass inside appends the layer's output to the yielded list.

    The output keeps its autograd graph, so the elimination loss can back-propagate through it.

    Args:
        model: any classifier.
        layer: a submodule name as ``model.get_submodule`` takes it.

    Returns:
        A context manager yielding the list the outputs are appended to; the hook is removed on exit.

    Raises:
        ValueError: ``layer`` is not a submodule of ``model``.
    """
    store: list[Tensor] = []
    mod = check_layer(model, layer)
    handle = mod.register_forward_hook(lambda _m, _i, out: store.append(_first_tensor(out, layer)))
    try:
        yield store
    finally:
        handle.remove()


def extract(model: nn.Module, layer: str, x: Tensor) -> Tensor:
    """``h(x)``: the output of submodule ``layer`` for input ``x``; the rest of the network is skipped.

    Runs in the model's current mode and grad state (wrap in ``torch.no_grad()`` for inference).

    Args:
        model: any classifier.
        layer: a submodule name as ``model.get_submodule`` takes it.
        x: a batch of inputs.

    Returns:
        The layer's output for ``x`` (one tensor, batch first).

    Raises:
        ValueError: ``layer`` is unknown, is not called by the forward pass, or returns no tensor.
    """
    mod = check_layer(model, layer)
    box: list[Tensor] = []

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        box.append(_first_tensor(out, layer))
        raise _Stop

    handle = mod.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not box:
        raise ValueError(f"layer {layer!r} was not called during the forward pass of {type(model).__name__}")
    return box[0]


def run_substituted(model: nn.Module, layer: str, x: Tensor, h_sub: Tensor) -> Tensor:
    """``g(h_sub)``: run ``model(x)`` with the output of ``layer`` replaced by ``h_sub``.

    ``x`` only drives the layers before ``layer`` (and any skip connection around it); for a plain
    feed-forward model the result depends on ``h_sub`` alone.

    Args:
        model: any classifier.
        layer: a submodule name as ``model.get_submodule`` takes it.
        x: a batch of inputs.
        h_sub: the substitute feature, of the shape the layer outputs for ``x``.

    Returns:
        The model's output (logits) with the substitute in place of the layer's output.

    Raises:
        ValueError: ``layer`` is unknown or not called, or ``h_sub`` has the wrong shape.
    """
    mod = check_layer(model, layer)
    called = []

    def hook(_m: nn.Module, _i: object, out: object) -> Tensor:
        o = _first_tensor(out, layer)
        if o.shape != h_sub.shape:
            raise ValueError(f"substitute for layer {layer!r} has shape {tuple(h_sub.shape)}, "
                             f"the layer outputs {tuple(o.shape)}")
        called.append(True)
        return h_sub.to(dtype=o.dtype)

    handle = mod.register_forward_hook(hook)
    try:
        out = model(x)
    finally:
        handle.remove()
    if not called:
        raise ValueError(f"layer {layer!r} was not called during the forward pass of {type(model).__name__}")
    return out


def forward_with_reconstruction(model: nn.Module, layer: str, x: Tensor,
                                rebuild: Callable[[Tensor], Tensor], batched: bool = True
                                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(f(x), g(h_hat), h, h_hat)`` with ``h_hat = rebuild(h(x))``.

    ``batched=True`` costs one front pass plus a tail pass on ``2N`` items (see the module
    docstring); ``batched=False`` costs one full pass plus one substituted full pass.

    Args:
        model: any classifier.
        layer: a submodule name as ``model.get_submodule`` takes it.
        x: a batch of ``N`` inputs.
        rebuild: maps the layer's output ``h`` to its reconstruction ``h_hat`` (same shape).
        batched: double the batch inside the layer's hook (one front pass) instead of two passes.

    Returns:
        ``(f(x), g(h_hat), h, h_hat)``, i.e. the logits, the logits from the reconstruction, the feature
        and its reconstruction, each with ``N`` rows.

    Raises:
        ValueError: ``layer`` is unknown or not called during the forward pass.
        RuntimeError: with ``batched=True``, the tail after ``layer`` does not keep the batch
            dimension (use ``batched=False``).
    """
    mod = check_layer(model, layer)
    n = len(x)
    box: dict[str, Tensor] = {}
    if batched:
        def hook(_m: nn.Module, _i: object, out: object) -> Tensor:
            h = _first_tensor(out, layer)
            h_hat = rebuild(h).to(dtype=h.dtype)
            box["h"], box["h_hat"] = h, h_hat
            return torch.cat([h, h_hat])

        handle = mod.register_forward_hook(hook)
        try:
            out = model(x)
        finally:
            handle.remove()
        if "h" not in box:
            raise ValueError(f"layer {layer!r} was not called during the forward pass of {type(model).__name__}")
        if out.shape[0] != 2 * n:
            raise RuntimeError(f"tail of {type(model).__name__} after {layer!r} does not keep the batch "
                               f"dimension ({out.shape[0]} rows for {2 * n}); use batched=False")
        return out[:n], out[n:], box["h"], box["h_hat"]

    with capture(model, layer) as store:
        logits = model(x)
    if not store:
        raise ValueError(f"layer {layer!r} was not called during the forward pass of {type(model).__name__}")
    h = store[0]
    h_hat = rebuild(h).to(dtype=h.dtype)
    return logits, run_substituted(model, layer, x, h_hat), h, h_hat


@torch.no_grad()
def batched_tail_ok(model: nn.Module, layer: str, x: Tensor, rebuild: Callable[[Tensor], Tensor],
                    atol: float = 1e-4) -> bool:
    """True when the one-front-pass trick of :func:`forward_with_reconstruction` gives the same
    answers as two honest passes on ``x`` (checked once, at fit time).

    Args:
        model: any classifier.
        layer: a submodule name as ``model.get_submodule`` takes it.
        x: a small batch to compare on.
        rebuild: as for :func:`forward_with_reconstruction`.
        atol: absolute tolerance, scaled by the largest logit when that exceeds 1.

    Returns:
        Whether both ways agree on ``f(x)`` and ``g(h_hat)``; False also when the batched way fails.
    """
    try:
        f1, g1, _, _ = forward_with_reconstruction(model, layer, x, rebuild, batched=True)
    except RuntimeError:
        return False
    f2, g2, _, _ = forward_with_reconstruction(model, layer, x, rebuild, batched=False)
    scale = max(1.0, float(f2.abs().max()))
    return bool(torch.allclose(f1, f2, atol=atol * scale) and torch.allclose(g1, g2, atol=atol * scale))


@torch.no_grad()
def tail_fraction(model: nn.Module, layer: str, x: Tensor) -> float:
    """Share of the model's multiply-adds (conv and linear layers) spent after ``layer``.

    Used to report an honest cost per input: the batched reconstruction pass costs
    ``1 + tail_fraction`` forward passes. Counted from one forward pass on ``x`` (a batch of one
    suffices), in the order modules are called.

    Args:
        model: any classifier.
        layer: a submodule name as ``model.get_submodule`` takes it.
        x: example inputs; only ``x[:1]`` is run.

    Returns:
        A share in [0, 1]; 1.0 when the model has no conv or linear layer or ``layer`` is not called.
    """
    target = check_layer(model, layer)
    log: list[tuple[str, float]] = []

    def macs(m: nn.Module, inp: tuple, out: object) -> None:
        if not isinstance(out, Tensor):
            return
        if isinstance(m, nn.modules.conv._ConvNd):
            k = m.weight[0].numel()  # in_channels / groups * kernel elements
            log.append(("op", float(out.numel()) * k))
        elif isinstance(m, nn.Linear):
            log.append(("op", float(out.numel()) * m.in_features))

    handles = [m.register_forward_hook(macs) for m in model.modules()
               if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    handles.append(target.register_forward_hook(lambda *_: log.append(("mark", 0.0))))
    try:
        model(x[:1])
    finally:
        for h in handles:
            h.remove()
    total = sum(v for k, v in log if k == "op")
    marks = [i for i, (k, _) in enumerate(log) if k == "mark"]
    if total == 0 or not marks:
        return 1.0
    after = sum(v for k, v in log[marks[0] + 1:] if k == "op")
    return after / total
