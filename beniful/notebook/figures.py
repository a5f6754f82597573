"""Features and figures of the notebooks: middle-layer features for fig1, projections, grids, bars."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .. import features
from ..utils import batches
from .style import palette

__all__ = ["dataset_axes", "layer_features", "pca_2d", "separation", "plot_trigger_grid", "plot_feature_pca", "plot_metric_bars"]


@torch.no_grad()
def layer_features(model: nn.Module, x: Tensor, layer: str, batch_size: int = 256, pool: bool = False) -> Tensor:
    """Output of submodule ``layer`` for ``x`` (:func:`beniful.features.extract`), flattened to N x D.

    Args:
        model: the classifier; run in eval mode here and left in the mode it had.
        x: images N x C x H x W in [0, 1].
        layer: a submodule name (``model.get_submodule`` syntax).
        batch_size: images per forward pass.
        pool: average over the spatial axes first (one value per channel).

    Returns:
        Float tensor N x D on the CPU.
    """
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    feats: list[Tensor] = []
    try:
        for s in batches(len(x), batch_size):
            out = features.extract(model, layer, x[s].to(dev)).float()
            if pool and out.ndim == 4:
                out = out.mean(dim=(2, 3))
            feats.append(out.flatten(1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(feats) if feats else torch.empty(0)


def pca_2d(*groups: Tensor) -> list[np.ndarray]:
    """Project several feature groups with one PCA fitted on all of them (so they share axes)."""
    from sklearn.decomposition import PCA

    arrs = [g.numpy().astype(np.float64) for g in groups]
    both = np.concatenate(arrs)
    proj = PCA(n_components=2, random_state=0).fit(both)
    return [proj.transform(a) for a in arrs]


def separation(benign: np.ndarray, triggered: np.ndarray) -> float:
    """Centroid distance of two point clouds over their pooled standard deviation (a Fisher-like ratio)."""
    d = float(np.linalg.norm(benign.mean(0) - triggered.mean(0)))
    pooled = float(np.sqrt((benign.var(0).sum() + triggered.var(0).sum()) / 2))
    return d / max(pooled, 1e-12)


def plot_trigger_grid(models: dict[str, Any], n: int = 4, seed: int = 0):
    """Rows: ``n`` test images (non-target class); columns: clean, then each attack's triggered copy.

    Each triggered image is titled with the backdoored model's prediction, so a reader sees the
    trigger and that it works.

    Args:
        models: ``{attack: Case}`` (``"none"``: the clean model, for the clean image's prediction), or
            ``{dataset: {attack: Case}}`` for one block of rows per data set, side by side in one figure.
        n: test images per data set.
        seed: seed of the images drawn.

    Returns:
        The figure.
    """
    import matplotlib.pyplot as plt

    blocks = models if all(isinstance(v, dict) for v in models.values()) else {"": models}
    names = [a for a in next(iter(blocks.values())) if a != "none"]
    rows = n * len(blocks)
    fig, axes = plt.subplots(rows, len(names) + 1, figsize=(1.35 * (len(names) + 1), 1.45 * rows), squeeze=False)
    for k, (ds, block) in enumerate(blocks.items()):
        _trigger_rows(block, names, axes[k * n:(k + 1) * n], n, seed, ds)
    fig.suptitle("clean test images and their triggered copies (→ model prediction)", fontsize=9)
    fig.tight_layout()
    return fig


def _trigger_rows(models: dict[str, Any], names: Sequence[str], axes: Any, n: int, seed: int, label: str) -> None:
    """One data set's rows of :func:`plot_trigger_grid`."""
    first = models[names[0]]
    x, y = first.test.tensors()
    target = first.attack.target
    g = torch.Generator().manual_seed(seed)
    cand = torch.nonzero(y != target).flatten()
    pick = cand[torch.randperm(len(cand), generator=g)[:n]]
    xs, ys = x[pick], y[pick]
    cmap = "gray" if xs.shape[1] == 1 else None

    def show(ax, img: Tensor, title: str) -> None:
        arr = img.permute(1, 2, 0).numpy()
        ax.imshow(arr[..., 0] if arr.shape[2] == 1 else arr, cmap=cmap, vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        ax.set_title(title, fontsize=8)

    clean_model = models.get("none")
    for i in range(n):
        pred = ""
        if clean_model is not None:
            dev = next(clean_model.model.parameters()).device
            pred = f" → {int(clean_model.model(xs[i:i + 1].to(dev)).argmax())}"
        show(axes[i, 0], xs[i], f"clean {int(ys[i])}{pred}")
        if label:
            axes[i, 0].set_ylabel(label, fontsize=8)
        for j, a in enumerate(names, start=1):
            tm = models[a]
            dev = next(tm.model.parameters()).device
            tm.attack.to("cpu")
            xt = tm.attack.apply(xs[i:i + 1])
            p = int(tm.model(xt.to(dev)).argmax())
            show(axes[i, j], xt[0], f"{a} → {p}")


def dataset_axes(datasets: Sequence[str], ncols: int, width: float = 11.0, height: float = 3.2, sharey: bool = True):
    """A figure with one row of ``ncols`` panels per data set, so every figure page shows the quick
    data sets side by side; each row's first panel is labelled with its data set.

    Args:
        datasets: the run's data sets, in order.
        ncols: panels per row.
        width: figure width (inches).
        height: height of one row (inches).
        sharey: share the y axis within and across rows.

    Returns:
        ``(fig, axes)`` with ``axes[i, j]`` the j-th panel of data set i.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), ncols, figsize=(width, height * len(datasets)), squeeze=False,
                             sharey=sharey)
    for i, ds in enumerate(datasets):
        axes[i, 0].annotate(ds, xy=(0, 1.08), xycoords="axes fraction", fontsize=9, fontweight="bold")
    return fig, axes


def plot_feature_pca(points: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]], attacks: Sequence[str],
                     layers: Sequence[str]):
    """Grid of 2-D projections: rows = attacks, columns = layers; benign vs triggered points."""
    import matplotlib.pyplot as plt

    col = palette(["clean", "triggered"])
    fig, axes = plt.subplots(len(attacks), len(layers), figsize=(2.4 * len(layers), 2.2 * len(attacks)),
                             squeeze=False)
    for i, a in enumerate(attacks):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            benign, trig = points[(a, layer)]
            ax.scatter(benign[:, 0], benign[:, 1], s=5, alpha=0.5, color=col["clean"], label="benign", linewidths=0)
            ax.scatter(trig[:, 0], trig[:, 1], s=5, alpha=0.5, color=col["triggered"], label="triggered",
                       marker="^", linewidths=0)
            ax.set_xticks([]), ax.set_yticks([])
            if i == 0:
                ax.set_title(layer)
            if j == 0:
                ax.set_ylabel(a)
    axes[0, 0].legend(loc="best", fontsize=7, markerscale=2)
    fig.tight_layout()
    return fig


def plot_metric_bars(df: Any, metric: str, hue: str, x: str = "attack", ylim: tuple[float, float] = (0, 1.02),
                     title: str | None = None, ax: Any = None):
    """Grouped bars of ``metric`` per ``x`` coloured by ``hue`` (fixed colours per name)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    order = list(dict.fromkeys(df[x]))
    hue_order = list(dict.fromkeys(df[hue]))
    sns.barplot(data=df, x=x, y=metric, hue=hue, order=order, hue_order=hue_order, palette=palette(hue_order),
                errorbar=None, ax=ax)
    ax.set_ylim(*ylim)
    ax.set_xlabel("")
    ax.set_ylabel(metric.replace("_", " "))
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    return ax

