"""beniful.ablations sweeps (table4/fig4) on a tiny BadNets model: rows, columns and argument checks."""
from __future__ import annotations

import pandas as pd
import pytest

from beniful import ablations
from beniful.zoo import TrainedModel

FAST = {"vae_epochs": 2, "augment": 0}


@pytest.fixture(scope="module")
def tiny_tm(tiny_badnets_tm: TrainedModel) -> TrainedModel:
    """The shared tiny BadNets model (tests/conftest.py)."""
    return tiny_badnets_tm


def test_detection_by_param_gives_one_combined_row_per_value(tiny_tm: TrainedModel) -> None:
    df = ablations.detection_by_param(tiny_tm, "latent_dim", [4, 8], **FAST)
    assert list(df["value"]) == [4, 8] and set(df["signal"]) == {"both"} and set(df["param"]) == {"latent_dim"}
    assert df[["auroc", "tpr_at_5fpr", "flag_rate_clean"]].apply(lambda c: c.between(0, 1)).all().all()


def test_detection_by_param_scores_the_inputs_it_is_given(tiny_tm: TrainedModel) -> None:
    """A validation study scores its own images: the same images as clean and as triggered give
    AUROC 0.5 and equal flag rates, whatever the natural mix would have given."""
    from beniful.evaluation import natural_mix
    seen = []

    def same_images(tm: TrainedModel) -> tuple:
        x_clean, _ = natural_mix(tm)
        seen.append(len(x_clean))
        return x_clean[:40], x_clean[:40].clone()

    df = ablations.detection_by_param(tiny_tm, "calib_fraction", [0.3, 0.5], inputs=same_images, **FAST)
    assert len(seen) == 2 and list(df["value"]) == [0.3, 0.5]
    assert ((df["auroc"] - 0.5).abs() < 1e-9).all() and (df["flag_rate_clean"] == df["flag_rate_triggered"]).all()


def test_detection_by_param_rejects_a_doubly_given_or_unknown_parameter(tiny_tm: TrainedModel) -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        ablations.detection_by_param(tiny_tm, "latent_dim", [4], latent_dim=8, **FAST)
    with pytest.raises((TypeError, ValueError), match="not_a_param"):
        ablations.detection_by_param(tiny_tm, "not_a_param", [1], **FAST)


def test_sensitivity_to_rate_trains_one_model_per_rate(monkeypatch: pytest.MonkeyPatch, tiny_tm: TrainedModel) -> None:
    asked = []

    def fake_get(attack: str, progress: bool = True, rate: float = 0.1, **kw: object) -> TrainedModel:
        asked.append((attack, rate, kw["seed"]))
        return tiny_tm.replace(metrics={"acc": 0.5, "asr": rate})

    from beniful import zoo
    monkeypatch.setattr(zoo, "get", fake_get)
    df = ablations.sensitivity_to_rate("badnets", [0.05, 0.1], {"seed": 0}, **FAST)
    assert asked == [("badnets", 0.05, 0), ("badnets", 0.1, 0)]
    assert list(df["value"]) == [0.05, 0.1] and list(df["asr"]) == [0.05, 0.1]
    assert isinstance(df, pd.DataFrame) and set(df["param"]) == {"rate"}
    with pytest.raises(ValueError, match="poisoning rate"):
        ablations.sensitivity_to_rate("badnets", [1.5], {"seed": 0}, **FAST)


def test_validation_repairs_are_cached_with_their_suspicious_stats(tiny_tm, tmp_path, monkeypatch):
    """With the detector cache on, the form x lambda ablation's repairs are cached per split:
    table4 and fig4 share their lambda sweep, and a hit reports the same row, suspicious-set
    precision and recall included."""
    from beniful import evaluation
    monkeypatch.setenv("BENIFUL_CACHE", str(tmp_path))
    kw = {"epochs": 1, "device": "cpu", "detector_kwargs": {"vae_epochs": 2, "augment": 0, "cache": True}}
    first = ablations.elimination_by_form(tiny_tm, forms=["a+t"], lams=[1.0], split="validation", **kw)
    assert len(list((tmp_path / "repaired").glob("*.safetensors"))) == 1
    again = ablations.elimination_by_form(tiny_tm, forms=["a+t"], lams=[1.0], split="validation", **kw)
    assert "suspicious_precision" in again and first.equals(again)
    elim = ablations.BeniFulEliminator(form="a+t", lam=1.0, seed=tiny_tm.seed, **kw)
    assert evaluation.repaired_key(tiny_tm, elim, "validation") != evaluation.repaired_key(tiny_tm, elim)


def test_backdoor_consistency_splits_triggered_inputs_by_the_models_behaviour(tiny_tm: TrainedModel) -> None:
    import copy
    import dataclasses

    import torch

    from beniful.evaluation import elimination_split
    from beniful.training import TrainConfig, train_classifier

    # a model trained without poison on the same data plays the clean model
    torch.manual_seed(1)
    clean_model = copy.deepcopy(tiny_tm.model).train().requires_grad_(True)  # a detector froze the shared one
    train_classifier(clean_model, tiny_tm.train.data, tiny_tm.train.targets, TrainConfig(epochs=1, lr=0.05),
                     device="cpu", progress=False)
    clean_tm = dataclasses.replace(tiny_tm, model=clean_model.eval(), attack=None)
    df = ablations.backdoor_consistency(tiny_tm, clean_tm=clean_tm, eliminate=False, detector_kwargs=FAST)
    assert list(df.model) == ["backdoored", "clean"]
    # keeps_class is the model's accuracy on the triggered non-target inputs of the evaluation half
    _, ev = elimination_split(tiny_tm.test, tiny_tm.seed)
    x, y = ev.tensors()
    keep = y != tiny_tm.attack.target
    with torch.no_grad():
        pred = tiny_tm.model.eval()(tiny_tm.attack.apply(x[keep])).argmax(1)
    bd = df.set_index("model").loc["backdoored"]
    assert bd.keeps_class == pytest.approx(float((pred == y[keep]).float().mean()))
    # the two parts add up to the overall flag rate
    for _, r in df.iterrows():
        parts = [(r.keeps_class, r.flag_rate_triggered_kept), (1 - r.keeps_class, r.flag_rate_triggered_flipped)]
        total = sum(w * v for w, v in parts if w > 0)
        assert total == pytest.approx(r.flag_rate_triggered, abs=1e-6)


def test_elimination_by_setting_labels_each_row_and_passes_each_setting(tiny_badnets_tm) -> None:
    from beniful import ablations

    df = ablations.elimination_by_setting(tiny_badnets_tm, {"none": {"epochs": 0}, "one": {"epochs": 1}}, "ft",
                                          use_cache=False, batch_size=16)
    assert df.setting.tolist() == ["none", "one"] and (df.split == "validation").all()
    none = df.iloc[0]
    assert none.acc == none.acc_before and none.acc_drop == 0  # 0 epochs: the model as it was
    assert abs(df.iloc[1].acc_drop - (df.iloc[1].acc_before - df.iloc[1].acc)) < 1e-12


def test_elimination_ingredients_switch_off_one_ingredient_per_variant(monkeypatch, tiny_badnets_tm) -> None:
    from beniful import ablations

    seen = []

    def fake_row(tm, eliminator, split="test", **kw):
        seen.append((eliminator, split, kw))
        return {**tm.row(), "split": split, "acc": 0.9, "asr": 0.1, "acc_before": 0.95, "asr_before": 1.0}

    monkeypatch.setattr(ablations, "elimination_row", fake_row)
    df = ablations.elimination_ingredients(tiny_badnets_tm, detector_kwargs={"cache": True})
    assert df.variant.tolist() == list(ablations.INGREDIENTS)
    assert {"attack", "variant", "switched_off", "acc", "asr", "acc_before", "asr_before"} <= set(df.columns)
    assert all(e == "beniful" and s == "validation" and kw["detector_kwargs"] == {"cache": True} for e, s, kw in seen)
    passed = [{k: v for k, v in kw.items() if k != "detector_kwargs"} for _, _, kw in seen]
    assert passed[0] == {} and len({repr(sorted(p.items())) for p in passed}) == len(passed)  # all differ
    by = dict(zip(df.variant, passed))
    assert by["no keep"] == {"keep": 0.0} and by["no a"] == {"form": "t"}
    assert by["only feature distance"] == {"relabel": 0.0, "keep": 0.0, "transplant_ce": 0.0}
    assert df.acc_drop.tolist() == pytest.approx([0.05] * len(df))
    with pytest.raises(ValueError, match="keep"):
        ablations.elimination_ingredients(tiny_badnets_tm, keep=0.5)
    with pytest.raises(ValueError, match="unknown ingredient"):
        ablations.elimination_ingredients(tiny_badnets_tm, variants=["no lam"])


def test_ingredient_variants_reach_the_eliminator(tiny_badnets_tm) -> None:
    """Two variants run for real (one epoch, a 2-epoch VAE): each repair is built with its overrides."""
    from beniful import ablations

    df = ablations.elimination_ingredients(tiny_badnets_tm, variants=["default", "plain fine-tuning"], epochs=1,
                                           use_cache=False, device="cpu", detector_kwargs={"vae_epochs": 2})
    assert df.variant.tolist() == ["default", "plain fine-tuning"] and (df.split == "validation").all()
    assert df.uses_pool.all() and (df.steps > 0).all()
