"""The memory budget: parsing, its sources in order, and batch sizes derived from it."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from beniful import memory
from beniful.detectors.strip import STRIP


@pytest.mark.parametrize("value, expected", [(2048, 2048), (2e9, 2_000_000_000), ("512MiB", 512 * 2**20),
                                             ("2 GB", 2 * 10**9), ("1.5GiB", int(1.5 * 2**30)), ("100", 100)])
def test_parse_bytes_reads_numbers_and_units(value, expected):
    assert memory.parse_bytes(value) == expected


@pytest.mark.parametrize("value, msg", [("2 parsecs", "unknown unit"), ("lots", "cannot read"), (0, "at least 1"),
                                        (True, "number of bytes"), (None, "number of bytes")])
def test_parse_bytes_rejects_bad_values_naming_them(value, msg):
    with pytest.raises(ValueError, match=msg):
        memory.parse_bytes(value)


def test_budget_sources_in_order(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)
    assert memory.memory_budget("cpu") == memory.CPU_BUDGET_BYTES
    monkeypatch.setenv(memory.ENV_VAR, "3MiB")
    assert memory.memory_budget("cpu") == 3 * 2**20
    assert memory.memory_budget("cpu", "1KiB") == 1024  # an explicit value wins over the environment
    monkeypatch.setenv(memory.ENV_VAR, "three")
    with pytest.raises(ValueError, match=memory.ENV_VAR):
        memory.memory_budget("cpu")


def test_items_that_fit_is_capped_and_at_least_one():
    assert memory.items_that_fit(100, 1000) == 10
    assert memory.items_that_fit(100, 1000, cap=4) == 4
    assert memory.items_that_fit(10**9, 1000, cap=4) == 1
    assert memory.tensor_bytes((256, 16, 16)) == 256 * 2**10


def test_forward_item_bytes_grows_with_the_largest_activation():
    small = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    wide = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())
    x = torch.rand(2, 3, 32, 32)
    assert memory.forward_item_bytes(wide, x) > 10 * memory.forward_item_bytes(small, x) / 2
    assert memory.forward_item_bytes(wide, x) >= memory.ACTIVATION_FACTOR * 64 * 32 * 32 * 4


def test_detector_rejects_a_bad_budget_at_construction():
    with pytest.raises(ValueError, match="unknown unit"):
        STRIP(memory_budget="4 elephants")
    assert "memory_budget" not in STRIP(memory_budget="4GiB").params()  # where it runs, not what it computes


def test_a_small_budget_shrinks_batches_but_not_the_scores():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 4))
    x, y = torch.rand(40, 1, 12, 12), torch.arange(40) % 4
    big = STRIP(n_overlays=10, device="cpu").fit(model, (x, y))
    small = STRIP(n_overlays=10, device="cpu", memory_budget=3 * big.forward_bytes(x)).fit(model, (x, y))
    assert small.score_batch_size(x) == 3 < big.score_batch_size(x)
    torch.testing.assert_close(small.score(x), big.score(x))
