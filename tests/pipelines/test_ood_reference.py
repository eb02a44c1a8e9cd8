"""The out-of-distribution flag: real CT/MR slices are flagged by a brain-phantom model, its own kind is not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.out_of_distribution import OodReference, fit_reference, score
from phantoms import PhantomConfig, generate_cohort
from pipelines.latent_codes import load_model_input
from pipelines.ood_reference import OOD_FILE, image_ood, ood_reference
from pipelines.trained_model import load_trained_model
from pipelines.training import train
from pipelines.training_config import TrainConfig
from tests.conftest import pydicom_test_dir


def test_reference_thresholds_and_json_round_trip() -> None:
    rng = np.random.default_rng(0)
    errors, mus = rng.random(400) * 0.01, rng.normal(size=(400, 3))
    ref = fit_reference(errors, mus, quantile=0.99)
    assert ref.recon_threshold == pytest.approx(np.quantile(errors, 0.99))
    inside = [score(ref, e, m)["flagged"] for e, m in zip(errors, mus, strict=True)]
    assert 0 < np.mean(inside) <= 0.03  # about 1 % of the training scores lie above each threshold
    assert score(ref, 0.0, np.full(3, 10.0))["flagged"] and score(ref, 1.0, np.zeros(3))["flagged"]
    again = OodReference.from_json(json.loads(json.dumps(ref.to_json())))
    assert score(again, 0.005, mus[0]) == score(ref, 0.005, mus[0])
    with pytest.raises(ValueError, match="at least 10 training images"):
        fit_reference(errors[:5], mus[:5])
    with pytest.raises(ValueError, match=r"quantile must be in \(0.5, 1\)"):
        fit_reference(errors, mus, quantile=1.0)
    with pytest.raises(ValueError, match="mu: expected 3 values"):
        score(ref, 0.0, np.zeros(4))


@pytest.mark.integration
def test_real_ct_and_mr_are_flagged_and_held_out_phantoms_are_not(tmp_path: Path) -> None:
    generate_cohort(
        PhantomConfig(kind="brain2d", n=300, seed=8, size=32), tmp_path / "cohort", progress=False
    )
    run = tmp_path / "run"
    config = TrainConfig(
        datalist=tmp_path / "cohort" / "datalist.json",
        out_dir=run,
        spatial_size=(32, 32),
        size="tiny",
        latent_dim=8,
        epochs=3,
        batch_size=16,
        tracking_uri=None,
    )
    train(config)
    trained = load_trained_model(run)
    reference = ood_reference(trained)
    assert reference is not None and (run / OOD_FILE).is_file()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        x, _ = load_model_input(
            pydicom_test_dir() / name, trained.spatial_size, intensity_range=trained.intensity_range
        )
        assert image_ood(trained, x, reference)["flagged"], name
    test = json.loads((tmp_path / "cohort" / "datalist.json").read_text())["test"]
    flags = [
        image_ood(
            trained,
            load_model_input(
                tmp_path / "cohort" / r["image"],
                trained.spatial_size,
                intensity_range=trained.intensity_range,
            )[0],
            reference,
        )["flagged"]
        for r in test
    ]
    assert np.mean(flags) <= 0.05, f"{sum(flags)} of {len(flags)} held-out phantoms flagged"
