"""Tests of evaluation/synthesis_metrics.py against hand-computed values (and scipy's Pearson r)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from evaluation.synthesis_metrics import (
    enhancement_agreement,
    image_metrics,
    lesion_box,
    lesion_enhancement,
    lesion_metrics,
    synthesis_metrics,
)
from pipelines.synthesis_predictions import mean_metrics


def _square(shape: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    mask = np.zeros(shape)
    mask[tuple(slice(lo, hi) for _ in shape)] = 1.0
    return mask


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,  # numpy (*spatial)
        lambda a: torch.as_tensor(a)[None],  # torch (1, *spatial), as MONAI gives
    ],
)
@pytest.mark.parametrize("shape", [(16, 16), (12, 12, 12)])
def test_identical_images(make, shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(0).random(shape)
    m = image_metrics(make(image), make(image))
    assert m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["mae"] == 0.0
    assert m["psnr"] == math.inf


@pytest.mark.parametrize(("shift", "data_range"), [(0.1, 1.0), (0.25, 1.0), (0.1, 2.0)])
def test_known_shift(shift: float, data_range: float) -> None:
    target = np.full((16, 16), 0.5)
    m = image_metrics(target + shift, target, data_range=data_range)
    assert m["mae"] == pytest.approx(shift)
    # PSNR = 20 log10(range) - 10 log10(MSE), MSE = shift²
    assert m["psnr"] == pytest.approx(20 * math.log10(data_range) - 20 * math.log10(shift))
    # flat images: no variance, SSIM = (2 μx μy + C1) / (μx² + μy² + C1); MONAI works in float32,
    # whose rounding in the variances shows against C2 = 9e-4 as ~1e-4
    c1 = (0.01 * data_range) ** 2
    a, b = 0.5 + shift, 0.5
    assert m["ssim"] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=5e-4)


def test_lesion_metrics_count_only_the_lesion() -> None:
    target = np.zeros((16, 16))
    mask = _square((16, 16), 6, 10)  # 16 pixels
    pred = target + 0.2 * mask
    lesion = lesion_metrics(pred, target, mask)
    assert lesion["lesion_mae"] == pytest.approx(0.2)
    assert lesion["lesion_psnr"] == pytest.approx(-10 * math.log10(0.04))
    assert lesion["lesion_ssim"] < 1.0
    whole = image_metrics(pred, target)
    assert whole["mae"] == pytest.approx(0.2 * 16 / 256)
    # identical inside the lesion's dilated box: SSIM 1 there although the image differs elsewhere
    elsewhere = target.copy()
    elsewhere[0:2, 0:2] = 1.0
    assert lesion_metrics(elsewhere, target, mask)["lesion_ssim"] == pytest.approx(1.0, abs=1e-6)


def test_lesion_box_is_dilated_and_clipped() -> None:
    mask = np.zeros((10, 12))
    mask[1:3, 8:11] = 1
    assert lesion_box(mask, margin=2) == (slice(0, 5), slice(6, 12))
    assert lesion_box(np.zeros((4, 4))) is None
    with pytest.raises(ValueError, match=r"margin must be an int >= 0, got -1"):
        lesion_box(mask, margin=-1)


def test_small_lesion_box_shrinks_the_window() -> None:
    image = np.random.default_rng(1).random((16, 16))
    mask = np.zeros((16, 16))
    mask[8, 8] = 1
    assert lesion_metrics(image, image, mask, margin=1)["lesion_ssim"] == pytest.approx(
        1.0, abs=1e-6
    )  # 3x3 box
    assert math.isnan(lesion_metrics(image, image, mask, margin=0)["lesion_ssim"])  # 1x1: no window fits


def test_empty_mask_gives_nan() -> None:
    image = np.ones((8, 8))
    assert all(math.isnan(v) for v in lesion_metrics(image, image, np.zeros((8, 8))).values())


def test_enhancement_dice_and_correlation_of_known_maps() -> None:
    pre = np.ones((16, 16))
    true_region = _square((16, 16), 4, 8)  # 16 pixels
    pred_region = np.zeros((16, 16))
    pred_region[4:6, 4:8] = 1  # 8 pixels, all inside the true region
    body = np.ones((16, 16), bool)
    m = enhancement_agreement(pre, pre + 0.5 * pred_region, pre + true_region, body=body, threshold=0.1)
    assert m["enhancement_dice"] == pytest.approx(2 * 8 / (8 + 16))
    reference = stats.pearsonr((0.5 * pred_region).ravel(), true_region.ravel())[0]
    assert m["enhancement_correlation"] == pytest.approx(reference)
    opposite = enhancement_agreement(pre, pre - true_region, pre + true_region, body=body)
    assert opposite["enhancement_correlation"] == pytest.approx(-1.0)
    assert opposite["enhancement_dice"] == 0.0


def test_enhancement_threshold_and_empty_regions() -> None:
    pre = np.ones((8, 8))
    body = np.ones((8, 8), bool)
    weak = pre + 0.05 * _square((8, 8), 2, 4)
    # both below the threshold: no enhancing region on either side counts as agreement
    assert enhancement_agreement(pre, weak, weak, body=body, threshold=0.1)["enhancement_dice"] == 1.0
    # the prediction invents a region the target lacks
    assert enhancement_agreement(pre, weak, pre, body=body, threshold=0.01)["enhancement_dice"] == 0.0
    # a flat predicted map has no correlation
    assert math.isnan(enhancement_agreement(pre, pre, weak, body=body)["enhancement_correlation"])


def test_enhancement_only_counts_inside_the_body() -> None:
    pre = np.zeros((16, 16))
    pre[4:12, 4:12] = 1.0  # the body
    target = pre + 0.5 * _square((16, 16), 6, 8)
    pred = target.copy()
    pred[0, 0] = 1.0  # outside the body: ignored
    m = enhancement_agreement(pre, pred, target)  # body estimated from the target
    assert m["enhancement_dice"] == 1.0
    assert m["enhancement_correlation"] == pytest.approx(1.0)


def test_synthesis_metrics_combines_everything() -> None:
    pre = np.zeros((16, 16))
    pre[2:14, 2:14] = 0.5
    mask = _square((16, 16), 6, 9)
    target = pre + 0.4 * mask
    m = synthesis_metrics(pre, target, target, mask)
    assert set(m) == {
        "ssim", "psnr", "mae", "lesion_ssim", "lesion_psnr", "lesion_mae",
        "enhancement_correlation", "enhancement_dice",
        "lesions_enhancing", "lesions_detected", "lesions_not_enhancing", "lesions_false_enhanced",
    }  # fmt: skip
    assert m["mae"] == 0.0 and m["lesion_mae"] == 0.0 and m["enhancement_dice"] == 1.0
    assert (m["lesions_enhancing"], m["lesions_detected"], m["lesions_not_enhancing"]) == (1.0, 1.0, 0.0)
    no_mask = synthesis_metrics(pre, target, target)
    assert math.isnan(no_mask["lesion_ssim"]) and no_mask["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert "lesions_enhancing" not in no_mask


def test_lesion_level_detection_counts_each_lesion() -> None:
    """Three lesions: one enhancing and found, one enhancing and missed, one falsely enhanced."""
    pre = np.full((24, 24), 0.3)
    masks = [_square((24, 24), 2, 5), _square((24, 24), 10, 13), _square((24, 24), 18, 21)]
    mask = masks[0] + masks[1] + masks[2]
    target = pre + 0.5 * masks[0] + 0.5 * masks[1]  # lesions 1 and 2 enhance
    pred = pre + 0.5 * masks[0] + 0.02 * masks[1] + 0.3 * masks[2]  # 2 is missed, 3 falsely enhanced
    counts = lesion_enhancement(pre, pred, target, mask, threshold=0.1)
    assert counts == {
        "lesions_enhancing": 2.0, "lesions_detected": 1.0, "lesions_not_enhancing": 1.0, "lesions_false_enhanced": 1.0,
    }  # fmt: skip
    rates = mean_metrics([counts, lesion_enhancement(pre, target, target, mask)], "test_")
    # pooled over both cases: 3 of 4 enhancing lesions found, 1 of 2 non-enhancing falsely enhanced
    assert rates["test_enhancing_lesion_sensitivity"] == pytest.approx(0.75)
    assert rates["test_false_enhancement_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        lesion_enhancement(pre, pred, target, mask, threshold=float("nan"))


@pytest.mark.parametrize(
    ("pred", "target", "match"),
    [
        (np.zeros((8, 8)), np.zeros((8, 9)), r"same shape"),
        (np.zeros((2, 8, 8, 8)), np.zeros((2, 8, 8, 8)), r"single-channel 2D/3D image"),
        (np.zeros(8), np.zeros(8), r"single-channel 2D/3D image"),
        (np.full((8, 8), np.nan), np.zeros((8, 8)), r"pred holds NaN"),
    ],
)
def test_bad_inputs_are_refused(pred: np.ndarray, target: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        image_metrics(pred, target)


def test_bad_parameters_are_refused() -> None:
    image = np.zeros((8, 8))
    with pytest.raises(ValueError, match=r"data_range must be a number > 0, got 0"):
        image_metrics(image, image, data_range=0)
    with pytest.raises(ValueError, match=r"threshold must be a finite number"):
        enhancement_agreement(image, image, image, threshold=float("nan"))
    with pytest.raises(ValueError, match=r"body mask is empty"):
        enhancement_agreement(image, image, image, body=np.zeros((8, 8), bool))
