"""TeCo (Liu et al., 2023): triggered inputs break unevenly across corruption types."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baseline_planted import planted
from beniful import detectors
from beniful.detectors import corruptions as C
from beniful.detectors import teco as T
from beniful.metrics import auroc


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("channels", [1, 3])
def test_deviation_is_higher_for_triggered_inputs(channels):
    p = planted(channels)
    det = detectors.build("teco").fit(p["model"], p["clean"])
    s_clean, s_trig = det.score(p["test"]), det.score(p["trig"])
    assert s_clean.shape == (len(p["test"]),)
    assert auroc(s_clean, s_trig) > 0.9
    assert torch.equal(det.score(p["test"][:16]), det.score(p["test"][:16]))  # noise re-seeded per call
    flags = det.predict(p["test"])
    assert flags.dtype == torch.bool and float(flags.float().mean()) <= 0.25


def test_levels_follow_algorithm_1():
    p = planted(1)
    det = T.TeCo(corruptions=("contrast", "brightness")).fit(p["model"], p["clean"])
    x = p["trig"][:20]
    lv = det.levels(x)
    assert lv.shape == (20, 2) and int(lv.min()) >= 1 and int(lv.max()) <= 6
    # recompute the first corruption's levels by hand
    pred = p["model"](x).argmax(1)
    g = torch.Generator().manual_seed(0)
    flips = torch.stack([p["model"](C.corrupt(x, "contrast", s, g)).argmax(1) != pred for s in range(1, 6)], 1)
    assert torch.equal(lv[:, 0], T.first_flip(flips))


def test_first_flip_and_deviation():
    changed = torch.tensor([[False, False, True, True, False], [False] * 5, [True] * 5])
    assert T.first_flip(changed).tolist() == [3, 6, 1]
    lv = torch.tensor([[1, 6, 6, 3], [2, 2, 2, 2]])
    assert torch.allclose(T.deviation(lv), torch.tensor(np.std(lv.numpy(), axis=1), dtype=torch.float32))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(T.CORRUPTIONS))
def test_corruptions_are_valid_images_that_worsen_with_severity(name, channels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, channels, 20, 20) * 0.6 + 0.2
    x[:, :, 5:12, 5:12] = 0.95
    out = {s: C.corrupt(x, name, s, g) for s in (1, 5)}
    for s, o in out.items():
        assert o.shape == x.shape and float(o.min()) >= 0 and float(o.max()) <= 1
        assert torch.allclose(o * 255, (o * 255).round(), atol=1e-3)     # on the 8-bit grid
    d1, d5 = ((out[1] - x).abs().mean()), ((out[5] - x).abs().mean())
    assert float(d5) > float(d1) > 0


def test_brightness_keeps_hue_and_jpeg_is_near_lossless_at_high_quality():
    x = torch.tensor([0.2, 0.4, 0.1]).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    b = C.brightness(x, 0.2, torch.Generator())
    assert torch.allclose(b.max(1).values, torch.full((1, 4, 4), 0.6))   # HSV value + 0.2
    assert torch.allclose(b / b.max(1, keepdim=True).values, x / 0.4)     # same hue and saturation
    g = torch.Generator().manual_seed(0)
    gray = torch.rand(2, 1, 16, 16, generator=g)
    gray = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(gray, (1, 1, 1, 1), mode="replicate"), 3, 1)
    tinted = (0.5 * gray + 0.5 * torch.rand(2, 3, 1, 1, generator=g) + 0.1).clamp(0, 1)  # smooth chroma
    for img in (gray, tinted):
        assert float((C.jpeg_compression(img, 95, g) - img).abs().mean()) < 0.01
        assert float((C.jpeg_compression(img, 5, g) - img).abs().mean()) > 0.03
    d = C._dct_matrix(torch.device("cpu"))
    assert torch.allclose(d @ d.T, torch.eye(8), atol=1e-6)


def test_cost_and_bad_parameters():
    assert T.TeCo().forward_passes == 1 + 5 * len(T.DEFAULT_CORRUPTIONS)
    assert T.TeCo(corruptions=["contrast", "pixelate", "shot_noise"]).forward_passes == 16
    for kwargs in ({"corruptions": ("fog", "contrast")}, {"corruptions": ("contrast",)},
                   {"corruptions": ("contrast", "contrast")}, {"preset": "imagenet"}, {"fpr": 0.0}):
        with pytest.raises(ValueError):
            detectors.build("teco", **kwargs)
    x = torch.rand(2, 1, 8, 8)
    for sev in (0, 6, 2.0):
        with pytest.raises(ValueError):
            C.corrupt(x, "contrast", sev)
    with pytest.raises(ValueError):
        C.corrupt(x, "snow", 1)
