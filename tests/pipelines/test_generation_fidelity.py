"""The factor-fidelity part of ``evaluate-generation`` (``factor_fidelity_metrics``) on the 40-image phantom cohort.

"Synthetic" images that are the real held-out images themselves, with their true labels, must be
read exactly as the real ones: lesion shares equal to the detector's sensitivity and specificity
on them, and every factor read-out distribution at distance 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.factor_fidelity import predicted_lesion_area, train_lesion_detector
from pipelines import generation_report
from pipelines.datalists import load_datalist
from pipelines.generation_report import _with_masks, encoder_features, factor_fidelity_metrics
from pipelines.trained_model import load_trained_model


def test_real_images_as_synthetic_ones_read_back_as_real(
    untrained_run: Path, small_cohort: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detectors = []

    def keep(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        detectors.append(train_lesion_detector(*args, **kwargs))
        return detectors[-1]

    monkeypatch.setattr(generation_report, "train_lesion_detector", keep)
    trained = load_trained_model(untrained_run)
    train_records = load_datalist(small_cohort, "training")
    real_records = load_datalist(small_cohort, "test")
    fake, masks = _with_masks(trained, real_records)
    labels = np.array([r["label"] for r in real_records])
    train_x, _ = _with_masks(trained, train_records)
    features = (
        encoder_features(trained, train_x),
        encoder_features(trained, fake),
        encoder_features(trained, fake),
    )
    m = factor_fidelity_metrics(trained, train_records, real_records, fake, labels, features, seed=0)

    assert 0.0 <= m["detector_balanced_accuracy"] <= 1.0
    # the detector of the call reads the held-out images as the metrics say
    area = predicted_lesion_area(detectors[0], fake)
    present = area > m["lesion_area_threshold"]
    truth = masks.flatten(1).any(dim=1).numpy()
    assert np.array_equal(truth, labels == 1)  # phantoms: a lesion exactly in class 1
    assert m["lesion_present_share_class1"] == present[labels == 1].mean()
    assert m["lesion_absent_share_class0"] == (~present[labels == 0]).mean()
    assert m["detector_balanced_accuracy"] == (present[truth].mean() + (~present[~truth]).mean()) / 2
    assert m["lesion_area_ks"] == 0.0 and m["lesion_area_real_mean"] == m["lesion_area_fake_mean"]
    gaps = {
        k: v for k, v in m.items() if k.startswith("factor_") and k.endswith(("_ks", "_tv", "_wasserstein"))
    }
    assert {"factor_age_ks", "factor_sex_tv", "factor_site_tv"} <= set(gaps)
    assert all(v == 0.0 for v in gaps.values())
    assert "factor_age_probe_r2" in m and "factor_sex_probe_accuracy" in m


def test_no_masks_no_factor_fidelity(untrained_run: Path, small_cohort: Path) -> None:
    trained = load_trained_model(untrained_run)
    records = [{k: v for k, v in r.items() if k != "mask"} for r in load_datalist(small_cohort, "test")]
    fake = torch.zeros(2, 1, 32, 32)
    features = (np.zeros((len(records), 3)), np.zeros((len(records), 3)), np.zeros((2, 3)))
    assert factor_fidelity_metrics(trained, records, records, fake, np.array([0, 1]), features) == {}
