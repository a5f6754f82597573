"""beniful.notebook.figures: part of the notebook glue (see tests/notebook/conftest.py for the isolation).

Nothing here trains or loads a cached model: figures are drawn for tiny untrained networks and
the results/claims helpers read CSVs planted in a temporary folder.
"""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from beniful import attacks, datasets, models  # noqa: E402
from beniful import notebook as nb  # noqa: E402


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return models.build("preact_resnet18", num_classes=10, in_channels=1, width=4).eval()

def test_layer_features_match_a_manual_hook_and_leave_mode() -> None:
    model = _tiny_model()
    x = torch.rand(5, 1, 28, 28)
    got = nb.layer_features(model, x, "layer2", batch_size=2)
    store = []
    h = model.layer2.register_forward_hook(lambda m, i, o: store.append(o))
    with torch.no_grad():
        model(x)
    h.remove()
    assert torch.allclose(got, store[0].flatten(1), atol=1e-5)
    pooled = nb.layer_features(model, x, "layer2", pool=True)
    assert torch.allclose(pooled, store[0].mean(dim=(2, 3)), atol=1e-5)
    model.train()
    nb.layer_features(model, x, "layer1")
    assert model.training  # mode restored
    with pytest.raises(ValueError, match="unknown layer"):
        nb.layer_features(model, x, "layer9")

def test_pca_shares_axes_and_separation_ranks_clouds() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=g)
    far = torch.randn(200, 6, generator=g) + 5.0
    near = torch.randn(200, 6, generator=g)
    pa, pf = nb.pca_2d(a, far)
    assert pa.shape == (200, 2) and pf.shape == (200, 2)
    _, pn = nb.pca_2d(a, near)
    assert nb.separation(pa, pf) > 3.0
    assert nb.separation(*nb.pca_2d(a, near)) < 0.5
    assert nb.separation(pa, pa) == 0.0

def test_palette_is_stable_and_colour_blind() -> None:
    import seaborn as sns

    base = sns.color_palette("colorblind", 10)
    p1 = nb.palette(["strip", "beniful"])
    p2 = nb.palette(["beniful", "teco", "scale_up", "ibd_psc", "strip"])
    assert p1["beniful"] == p2["beniful"] == base[0]
    assert p1["strip"] == p2["strip"]
    assert len(set(p2.values())) == 5  # distinct within one figure
    assert all(c in base for c in p2.values())

def _fake_tm(attack: str | None, model: nn.Module, test: datasets.ImageDataset) -> SimpleNamespace:
    atk = attacks.build(attack, seed=0) if attack else None
    if atk is not None:
        atk.setup(test.shape)
    return SimpleNamespace(model=model, attack=atk, test=test)

def test_figures_draw_one_panel_per_cell() -> None:
    import matplotlib.pyplot as plt

    g = torch.Generator().manual_seed(0)
    test = datasets.ImageDataset((torch.rand(40, 1, 28, 28, generator=g) * 255).to(torch.uint8),
                                 torch.arange(40) % 10, "toy")
    model = _tiny_model()
    tms = {"none": _fake_tm(None, model, test), "badnets": _fake_tm("badnets", model, test),
           "blended": _fake_tm("blended", model, test)}
    fig = nb.plot_trigger_grid(tms, n=3)
    assert len(fig.axes) == 3 * 3
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1].startswith("badnets → ") and titles[0].startswith("clean ")
    plt.close(fig)
    pts = {(a, l): (np.zeros((4, 2)), np.ones((4, 2))) for a in ("badnets", "sig") for l in ("layer1", "layer3")}
    fig = nb.plot_feature_pca(pts, ["badnets", "sig"], ["layer1", "layer3"])
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "layer1"
    plt.close(fig)
    df = pd.DataFrame({"attack": ["a", "a", "b", "b"], "detector": ["beniful", "strip"] * 2, "auroc": [0.9, 0.5, 1.0, 0.6]})
    ax = nb.plot_metric_bars(df, "auroc", hue="detector")
    assert len(ax.patches) >= 4 and ax.get_ylabel() == "auroc"
    plt.close("all")
