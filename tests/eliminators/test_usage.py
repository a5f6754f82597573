"""What each eliminator uses: ``uses_pool`` and the optimisation steps it counts match what a repair does."""
from __future__ import annotations

import pytest
import torch

from beniful import eliminators
from beniful.eliminators.base import steps_per_epoch


def test_steps_per_epoch_skips_a_last_batch_of_one() -> None:
    assert steps_per_epoch(120, 7) == 17  # 17 full batches, the 18th would hold one image
    assert steps_per_epoch(121, 7) == 18 and steps_per_epoch(1, 7) == 0 and steps_per_epoch(200, 64) == 4


def test_only_pool_readers_say_they_use_the_pool() -> None:
    uses = {n: eliminators.ELIMINATORS.get(n).uses_pool for n in eliminators.available()}
    assert uses == {n: n in ("beniful", "ft_pool") for n in uses}


def _count(monkeypatch: pytest.MonkeyPatch, optimiser: type) -> list[int]:
    calls = [0]
    step = optimiser.step

    def counting(self, *a, **k):
        calls[0] += 1
        return step(self, *a, **k)

    monkeypatch.setattr(optimiser, "step", counting)
    return calls


# batch 7 on the 120 clean images: the last batch of each pass holds one image and is skipped
@pytest.mark.parametrize("name, kw, optimiser", [
    ("ft", {"epochs": 2, "batch_size": 7}, torch.optim.SGD),
    ("fp", {"epochs": 2, "batch_size": 7, "layer": "stage2"}, torch.optim.SGD),
    ("nad", {"teacher_epochs": 1, "epochs": 2, "batch_size": 7, "layers": ("stage1", "stage2"),
             "betas": (1.0, 1.0)}, torch.optim.SGD),
    ("ft_pool", {"epochs": 2, "batch_size": 7}, torch.optim.SGD),
    ("anp", {"iterations": 5, "batch_size": 16}, torch.optim.SGD),
    ("ibau", {"rounds": 2, "batch_size": 50, "min_steps": 4}, torch.optim.Adam),
])
def test_counted_steps_are_the_steps_a_repair_takes(monkeypatch, baseline_poisoned, baseline_data, name, kw,
                                                    optimiser) -> None:
    el = eliminators.build(name, device="cpu", hflip=False, **kw) if name != "ibau" else \
        eliminators.build(name, device="cpu", **kw)
    n = len(baseline_data.clean[1])
    calls = _count(monkeypatch, optimiser)
    el.repair(baseline_poisoned, baseline_data.clean, pool=baseline_data.x_test[:40])
    assert calls[0] == el.optimisation_steps(n, 40) > 0


def test_clean_epochs_say_how_often_each_method_sees_the_clean_data() -> None:
    build = eliminators.build
    assert build("ft", epochs=7).clean_epochs(200) == 7
    assert build("nad", teacher_epochs=3, epochs=4).clean_epochs(200) == 7
    assert build("anp", iterations=100, batch_size=128).clean_epochs(200) == 64
    ib = build("ibau", rounds=5, batch_size=100, min_steps=10)
    assert ib.clean_epochs(200) == 25 and ib.optimisation_steps(200) == 50  # 5 passes of 2 steps a round
    assert ib.clean_epochs(5000) == 5  # the authors' one pass a round
