import numpy as np
import pytest
import torch

from beniful import metrics


def test_auroc_perfect_random_and_inverted():
    clean = torch.tensor([0.0, 0.1, 0.2, 0.3])
    assert metrics.auroc(clean, clean + 1.0) == 1.0
    assert metrics.auroc(clean + 1.0, clean) == 0.0
    assert metrics.auroc(torch.zeros(5), torch.zeros(5)) == 0.5  # ties count one half


def test_tpr_at_fpr_uses_clean_quantile():
    clean = torch.arange(100, dtype=torch.float32)  # 0..99
    trig = torch.tensor([94.5, 95.5, 200.0, -1.0])
    # 5% FPR: at most 5 clean scores above the threshold -> threshold = 94
    assert metrics.threshold_at_fpr(clean, 0.05) == 94.0
    assert metrics.tpr_at_fpr(clean, trig, 0.05) == pytest.approx(0.75)


def test_threshold_hits_target_fpr_on_large_sample():
    rng = np.random.default_rng(0)
    fit, held = rng.normal(size=20000), rng.normal(size=20000)
    thr = metrics.threshold_at_fpr(fit, 0.05)
    assert abs((held > thr).mean() - 0.05) < 0.01


def test_roc_curve_endpoints():
    fpr, tpr = metrics.roc_curve([0, 1, 2], [1.5, 3])
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1


@pytest.mark.parametrize("clean,trig", [([], [1.0]), ([1.0], []), ([float("nan")], [1.0])])
def test_bad_scores_rejected(clean, trig):
    with pytest.raises(ValueError):
        metrics.auroc(clean, trig)


def test_bad_fpr_rejected():
    with pytest.raises(ValueError, match="fpr"):
        metrics.threshold_at_fpr([1.0, 2.0], 1.5)


def test_detection_metrics_are_the_tables_columns():
    from beniful.metrics import detection_metrics

    clean, trig = torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([0.35, 0.5, 0.6])
    free = detection_metrics(clean, trig)
    assert set(free) == {"auroc", "tpr_at_5fpr"} and free["auroc"] == pytest.approx(11 / 12)
    deployed = detection_metrics(clean, trig, threshold=0.33)
    assert deployed["flag_rate_clean"] == pytest.approx(0.25) and deployed["flag_rate_triggered"] == 1.0
