"""Repaired models are cached (safetensors, keyed by model key + eliminator parameters + source) and
reused; repairs that live in forward hooks (FP) and eliminators holding a fitted detector are not."""
from __future__ import annotations


import pytest
import torch

from beniful import cache, evaluation, sources
from beniful.case import Case
from beniful.datasets import ImageDataset
from beniful.eliminators.beniful import BeniFulEliminator
from beniful.eliminators.fp import FinePruning
from beniful.eliminators.ft import FineTuning


@pytest.fixture
def tm(baseline_poisoned, baseline_data, tmp_path, monkeypatch):
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    test = ImageDataset((baseline_data.x_test * 255).round().to(torch.uint8), baseline_data.y_test, "stripes")
    return Case(model=baseline_poisoned, attack=None, test=test, clean=baseline_data.clean, key="tiny-poisoned")


def _refuse(*_a, **_k):
    raise AssertionError("repair ran although the cache holds this repair")


def test_second_repair_comes_from_the_cache(tm):
    first = FineTuning(epochs=1, device="cpu")
    a = evaluation.repaired_model(tm, first, None)
    again = FineTuning(epochs=1, device="cpu")
    again.repair = _refuse
    b = evaluation.repaired_model(tm, again, None)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert again.wall_seconds == pytest.approx(first.wall_seconds) and not b.training
    assert b is not tm.model


def test_other_parameters_or_model_miss_the_cache(tm):
    key = evaluation.repaired_key(tm, FineTuning(epochs=1, device="cpu"))
    assert key != evaluation.repaired_key(tm, FineTuning(epochs=2, device="cpu"))
    assert key != evaluation.repaired_key(tm.replace(key="other"), FineTuning(epochs=1, device="cpu"))
    assert key != evaluation.repaired_key(tm, FineTuning(epochs=1, device="cpu", seed=1))


def test_hooked_repairs_are_not_cached(tm):
    el = FinePruning(layer="stage2", epochs=1, device="cpu")
    evaluation.repaired_model(tm, el, None)
    assert cache.load(evaluation.repaired_key(tm, el), kind="repaired") is None


def test_use_cache_false_always_repairs(tm):
    evaluation.repaired_model(tm, FineTuning(epochs=1, device="cpu"), None)
    el = FineTuning(epochs=1, device="cpu")
    el.repair = _refuse
    with pytest.raises(AssertionError, match="repair ran"):
        evaluation.repaired_model(tm, el, None, use_cache=False)


def test_a_reused_beniful_instance_stays_cacheable(tm, baseline_clean_model, baseline_data):
    """The detector a BeniFul eliminator fits itself is not build-time state: the same instance's
    repair of a second model is still cached (only a build-time detector turns caching off)."""
    el = BeniFulEliminator(layer="stage1", epochs=1, device="cpu",
                           detector_kwargs={"vae_epochs": 5, "latent_dim": 8, "augment": 0})
    pool = baseline_data.x_test[:100]
    evaluation.repaired_model(tm, el, pool)
    other = tm.replace(key="tiny-clean", model=baseline_clean_model)
    evaluation.repaired_model(other, el, pool)
    assert el.detector is None
    for t in (tm, other):
        assert cache.load(evaluation.repaired_key(t, el), kind="repaired") is not None
    given = BeniFulEliminator(layer="stage1", epochs=1, device="cpu", detector=el.last_detector)
    evaluation.repaired_model(other, given, pool)
    assert cache.load(evaluation.repaired_key(other, given), kind="repaired") is None


@pytest.mark.parametrize("edited", ["vae.py", "features.py", "detectors/beniful.py", "eliminators/beniful.py",
                                    "eliminators/base.py"])
def test_the_repaired_key_follows_the_code_the_eliminator_imports(tm, monkeypatch, edited_package, edited):
    """BeniFul's repair depends on its detector, the VAE and the feature hooks through its imports:
    a real edit of any of them gives a new key, so no stale repair is loaded."""
    el = BeniFulEliminator(layer="stage1", device="cpu")
    key = evaluation.repaired_key(tm, el)
    monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({"attacks/iad.py": "\n# an edit\n"}, "other"))
    assert evaluation.repaired_key(tm, el) == key
    monkeypatch.setattr(sources, "PACKAGE_ROOT", edited_package({edited: "\n# an edit\n"}, "edited"))
    assert evaluation.repaired_key(tm, el) != key
