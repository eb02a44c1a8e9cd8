"""Tests of pipelines/explain_dataset.py: every method scored on true positives, dataset report."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipelines.explain import METHODS, ExplainSettings, image_explanations
from pipelines.explain_dataset import explain_dataset
from pipelines.latent_codes import load_model_input
from pipelines.trained_model import load_trained_model
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
    assert 0.0 <= m["ood_flagged_share"] <= 1.0  # the section scored against the training images
    assert 0.0 <= m["cf_mean_outside_body_share"] <= 1.0 and 0.0 <= m["counterfactual_dice"] <= 1.0
    page = _check_report(tmp_path)
    assert "latent_attribute_correlation.png" in page.src and "counterfactual_0.png" in page.src


def test_explaining_an_image_leaves_the_model_as_it_was(shortcut_run: tuple[Path, Path]) -> None:
    run, datalist = shortcut_run
    trained = load_trained_model(run)
    before = {k: v.clone() for k, v in trained.network.state_dict().items()}
    record = next(r for r in json.loads(Path(datalist).read_text())["test"] if r.get("mask"))
    folder = Path(datalist).parent
    x, mask = load_model_input(
        folder / record["image"],
        trained.spatial_size,
        mask=folder / record["mask"],
        intensity_range=trained.intensity_range,
    )
    sigma = torch.ones(trained.network.latent_dim)
    first_maps = None
    for _ in range(2):  # the same image twice: the second pass sees what the first left behind
        _, _, maps, _ = image_explanations(trained, x, ExplainSettings(deletion_steps=4), sigma, mask)
        assert not trained.network.training  # occlusion's wrapper once switched it to training mode ...
        after = trained.network.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)  # ... and batch-norm statistics moved
        if first_maps is None:
            first_maps = maps
    assert all(torch.allclose(first_maps[k], maps[k]) for k in ("attention", "contribution", "gradcam"))
