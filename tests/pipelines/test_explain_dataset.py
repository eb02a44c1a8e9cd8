"""Tests of pipelines/explain_dataset.py: every method scored on true positives, dataset report."""

from __future__ import annotations

from pathlib import Path

from pipelines.explain import METHODS, ExplainSettings
from pipelines.explain_dataset import explain_dataset
from tests.pipelines.test_explain import _check_report


def test_dataset_report_scores_every_method_on_true_positives(
    shortcut_run: tuple[Path, Path], tmp_path: Path
) -> None:
    run, datalist = shortcut_run
    result = explain_dataset(
        run,
        datalist,
        tmp_path,
        section="test",
        settings=ExplainSettings(max_images=2, traversal_dims=2),
        track=False,
        progress=False,
    )
    m = result["metrics"]
    assert m["true_positives_explained"] == 2.0
    for method in METHODS:
        assert 0.0 <= m[f"{method}_pointing_game_strict"] <= m[f"{method}_pointing_game"] <= 1.0
        assert 0.0 <= m[f"{method}_topk_iou"] <= 1.0
    assert m["cf_flip_rate"] == 1.0
    assert 0.0 < m["cf_median_changed_fraction"] <= 1.0
    assert "disentanglement/mig" in m  # factors.csv sits beside the cohort's datalists
    page = _check_report(tmp_path)
    assert "latent_attribute_correlation.png" in page.src and "counterfactual_0.png" in page.src
