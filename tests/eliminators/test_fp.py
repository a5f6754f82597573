"""FP: prunes the channel that is dormant on clean data (the planted backdoor unit), through a hook."""
from __future__ import annotations

import pytest
import torch

from beniful import eliminators
from beniful.eliminators.fp import ChannelMask, FinePruning, mean_channel_activation


def test_fp_is_registered():
    assert isinstance(eliminators.build("fp"), FinePruning)


def test_mean_channel_activation_finds_the_dormant_unit(baseline_planted, baseline_data):
    m = baseline_planted.model
    act = mean_channel_activation(m, m.stage2, baseline_data.clean[0], 64, torch.device("cpu"))
    assert act.shape == (baseline_planted.unit + 1,)
    assert act[baseline_planted.unit] == 0 and int(act.argmin()) == baseline_planted.unit
    assert (act[: baseline_planted.unit] > 0).all()


def test_fp_prunes_the_planted_dormant_channel_and_removes_the_backdoor(baseline_planted, baseline_data,
                                                                        baseline_clean_model):
    d, m = baseline_data, baseline_planted.model
    before = {k: v.clone() for k, v in m.state_dict().items()}
    assert d.asr(m, d.x_test, d.y_test) > 0.9
    el = FinePruning(layer="stage2", epochs=0, device="cpu")
    fixed = el.repair(m, d.clean)
    assert baseline_planted.unit in el.pruned_channels
    assert len(el.pruned_channels) < baseline_planted.unit + 1
    # back to the clean model's rate (a white patch alone sends a few digits to the target)
    assert d.asr(fixed, d.x_test, d.y_test) <= d.asr(baseline_clean_model, d.x_test, d.y_test) + 0.05
    assert d.accuracy(fixed, d.x_test, d.y_test) >= d.accuracy(m, d.x_test, d.y_test) - el.tolerance - 0.05
    # the argument keeps its weights and has no hook; the pruning lives in a hook on the copy
    assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    assert not m.stage2._forward_hooks
    assert any(isinstance(h, ChannelMask) for h in fixed.stage2._forward_hooks.values())


def test_fp_pruned_channels_stay_zero_after_finetuning(baseline_planted, baseline_data):
    el = FinePruning(layer="stage2", epochs=2, device="cpu")
    fixed = el.repair(baseline_planted.model, baseline_data.clean)
    out = []
    h = fixed.stage2.register_forward_hook(lambda _m, _i, o: out.append(o))
    with torch.no_grad():
        fixed(baseline_data.trigger(baseline_data.x_test[:16]))
    h.remove()
    assert torch.all(out[0][:, el.pruned_channels] == 0)


def test_fp_zero_tolerance_stops_before_the_accuracy_drops(baseline_planted, baseline_data):
    el = FinePruning(layer="stage2", tolerance=0.0, epochs=0, device="cpu")
    el.repair(baseline_planted.model, baseline_data.clean)
    assert all(a >= el.prune_curve[0] for a in el.prune_curve[: len(el.pruned_channels) + 1])


def test_fp_unknown_layer_lists_names(baseline_planted, baseline_data):
    with pytest.raises(ValueError, match="stage2"):
        FinePruning(layer="layer4", device="cpu").repair(baseline_planted.model, baseline_data.clean)


@pytest.mark.parametrize("kw", [{"tolerance": -0.1}, {"tolerance": 1.5}, {"val_fraction": 0}, {"val_fraction": 1.0},
                                {"layer": ""}, {"epochs": -1}])
def test_fp_rejects_bad_parameters(kw):
    with pytest.raises(ValueError):
        FinePruning(**kw)
