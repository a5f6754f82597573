"""BadNets: only the patch pixels change, and they take the patch value."""
from __future__ import annotations

import pytest
import torch

from beniful import attacks

torch.set_num_threads(1)


@pytest.mark.parametrize("position,rows,cols", [
    ("bottom_right", slice(13, 16), slice(13, 16)),
    ("bottom_left", slice(13, 16), slice(0, 3)),
    ("top_right", slice(0, 3), slice(13, 16)),
    ("top_left", slice(0, 3), slice(0, 3)),
])
def test_only_patch_pixels_change(position, rows, cols):
    x = torch.rand(4, 3, 16, 16) * 0.5
    out = attacks.build("badnets", position=position).apply(x)
    patch = torch.zeros(16, 16, dtype=torch.bool)
    patch[rows, cols] = True
    assert bool((out[..., patch] == 1.0).all())
    assert torch.equal(out[..., ~patch], x[..., ~patch])


def test_patch_size_and_value():
    x = torch.rand(2, 1, 10, 10)
    out = attacks.build("badnets", patch_size=4, value=0.25).apply(x)
    assert bool((out[..., 6:, 6:] == 0.25).all())
    changed = (out != x).any(dim=(0, 1))
    assert not bool(changed[:6, :].any()) and not bool(changed[:, :6].any())


@pytest.mark.parametrize("kw,msg", [({"patch_size": 0}, "patch_size"), ({"value": 1.5}, "value"),
                                    ({"position": "centre"}, "bottom_right")])
def test_bad_parameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        attacks.build("badnets", **kw)


def test_patch_larger_than_image_rejected():
    with pytest.raises(ValueError, match="does not fit"):
        attacks.build("badnets", patch_size=5).apply(torch.rand(1, 1, 4, 4))
