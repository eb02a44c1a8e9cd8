"""Pointing game, top-k IoU and deletion/insertion AUCs on hand-made maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.map_scores import deletion_insertion_auc, pointing_game, summarise_scores, topk_iou


@pytest.fixture
def square() -> np.ndarray:
    mask = np.zeros((16, 16))
    mask[4:8, 4:12] = 1  # 32 of 256 pixels
    return mask


@pytest.mark.parametrize("as_tensor", [False, True])
def test_pointing_game(square, as_tensor):
    convert = torch.as_tensor if as_tensor else np.asarray
    assert pointing_game(convert(square), convert(square))
    outside = np.zeros((16, 16))
    outside[0, 0] = 1.0
    assert not pointing_game(convert(outside), convert(square))
    # (0, 0) is √(4² + 4²) ≈ 5.66 px from the mask corner (4, 4)
    assert not pointing_game(outside, square, tolerance_px=5)
    assert pointing_game(outside, square, tolerance_px=6)


def test_pointing_game_ties_and_3d(square):
    assert not pointing_game(np.ones((16, 16)), square), "a constant map points nowhere"
    plateau = np.zeros((16, 16))
    plateau[4, 2:6] = 1.0  # 2 of 4 tied maxima inside
    assert pointing_game(plateau, square)
    plateau[4, 5] = 0.0  # 1 of 3 inside
    assert not pointing_game(plateau, square)
    volume = torch.zeros(8, 8, 8)
    volume[5, 6, 7] = 2.0
    region = torch.zeros(8, 8, 8)
    region[5:, 5:, 5:] = 1
    assert pointing_game(volume, region) and not pointing_game(volume, 1 - region)


def test_topk_iou(square):
    assert topk_iou(square, square, fraction=32 / 256) == 1.0
    assert topk_iou(-square, square, fraction=32 / 256) == 0.0
    # a map positive everywhere: its top 64 pixels hold the whole mask (32) and 32 others: IoU 32 / 64
    assert topk_iou(square + 0.01, square, fraction=64 / 256) == 0.5
    # a map that marks only 32 pixels is scored on those: the mask itself, IoU 1
    assert topk_iou(square, square, fraction=64 / 256) == 1.0
    sparse = np.zeros((16, 16))
    sparse[4, 4:12] = 0.3  # 8 marked pixels, all inside: IoU 8 / 32 (not 8 / 88 with 56 corner zeros)
    assert topk_iou(sparse, square, fraction=64 / 256) == 8 / 32
    corner = np.zeros((16, 16))
    corner[0, 0] = 1
    assert topk_iou(np.zeros((16, 16)), corner) == 0.0, "an all-zero map marks no pixel, not the corner"
    ramp = np.arange(16.0)[::-1].reshape(4, 4)  # top 4 = first row
    mask = np.zeros((4, 4))
    mask[0, :2] = 1
    assert topk_iou(ramp, mask, fraction=4 / 16) == 0.5
    assert topk_iou(ramp, mask, fraction=1e-9) == 1 / 2  # at least one pixel: (0, 0), inside


def test_localisation_errors(square):
    with pytest.raises(
        ValueError,
        match=r"saliency and mask must have the same shape, got saliency \(16, 16\) and mask \(16, 15\)",
    ):
        pointing_game(square, square[:, :15])
    with pytest.raises(ValueError, match=r"mask is empty"):
        topk_iou(square, np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"saliency must be finite"):
        pointing_game(np.full((16, 16), np.nan), square)
    with pytest.raises(ValueError, match=r"tolerance_px must be >= 0, got -1"):
        pointing_game(square, square, tolerance_px=-1)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 0"):
        topk_iou(square, square, fraction=0)
    with pytest.raises(TypeError, match="mask must be a numpy array or torch tensor, got list"):
        pointing_game(square, square.tolist())


def _mask_mean(mask: torch.Tensor):
    """Score: mean intensity inside the mask (1 for the intact all-ones image)."""
    return lambda batch: (batch[:, 0] * mask).flatten(1).sum(1) / mask.sum()


def test_deletion_insertion_by_hand():
    mask = torch.zeros(8, 8)
    mask[:2] = 1  # a quarter of the pixels
    image = torch.ones(1, 8, 8)
    perfect = deletion_insertion_auc(_mask_mean(mask), image, mask, steps=4)
    # deletion: scores 1, 0, 0, 0, 0 over fractions 0, .25, .5, .75, 1 → 0.125; insertion the mirror
    assert perfect["deletion_auc"] == pytest.approx(0.125)
    assert perfect["insertion_auc"] == pytest.approx(0.875)
    assert perfect["fractions"] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert perfect["deletion_curve"] == pytest.approx([1, 0, 0, 0, 0])
    reversed_map = deletion_insertion_auc(_mask_mean(mask), image, 1 - mask, steps=4)
    assert reversed_map["deletion_auc"] == pytest.approx(0.875)
    assert reversed_map["insertion_auc"] == pytest.approx(0.125)


def test_deletion_insertion_baseline_batching_and_3d():
    torch.manual_seed(0)
    mask = (torch.rand(4, 4, 4) > 0.7).float()
    image = 0.5 + torch.rand(1, 1, 4, 4, 4)
    calls = []

    def score(batch):
        calls.append(batch.shape[0])
        return _mask_mean(mask)(batch)

    full = deletion_insertion_auc(score, image, mask, steps=8)
    assert calls == [9, 9]
    calls.clear()
    chunked = deletion_insertion_auc(score, image, mask, steps=8, batch_size=4)
    assert calls == [4, 4, 1, 4, 4, 1]
    assert chunked["deletion_auc"] == pytest.approx(full["deletion_auc"])
    assert full["deletion_auc"] < deletion_insertion_auc(score, image, -mask, steps=8)["deletion_auc"]
    # deleting towards the image itself changes nothing: both curves stay at the intact score
    same = deletion_insertion_auc(score, image, mask, steps=8, baseline=image[0])
    intact = float(_mask_mean(mask)(image))
    assert same["deletion_auc"] == pytest.approx(intact) and same["insertion_auc"] == pytest.approx(intact)
    # numpy inputs, channel-first image without a batch axis
    assert deletion_insertion_auc(score, image[0].numpy(), mask.numpy(), steps=8)[
        "insertion_auc"
    ] == pytest.approx(full["insertion_auc"])


def test_deletion_insertion_errors():
    image = torch.ones(1, 8, 8)
    with pytest.raises(
        ValueError,
        match=r"saliency must have the image's spatial shape, got saliency \(8, 7\) and image \(1, 8, 8\)",
    ):
        deletion_insertion_auc(lambda b: b.sum((1, 2, 3)), image, torch.ones(8, 7))
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        deletion_insertion_auc(lambda b: b.sum((1, 2, 3)), image, torch.ones(8, 8), steps=0)
    with pytest.raises(ValueError, match="batch_size must be None or an int >= 1, got 0"):
        deletion_insertion_auc(lambda b: b.sum((1, 2, 3)), image, torch.ones(8, 8), batch_size=0)
    with pytest.raises(ValueError, match="score_fn must return one score per image, got 1 for a batch of 21"):
        deletion_insertion_auc(lambda b: b.sum(), image, torch.ones(8, 8))


def test_summarise_scores():
    per_image = [
        {"hit": True, "iou": 0.5, "curve": [1, 2], "id": "a", "auc": torch.tensor(0.2)},
        {"hit": False, "iou": 0.25, "auc": float("nan")},
        {"hit": True, "iou": 0.0},
    ]
    summary = summarise_scores(per_image)
    assert summary == {
        "hit": pytest.approx(2 / 3),
        "iou": pytest.approx(0.25),
        "auc": pytest.approx(0.2),
        "n_images": 3,
    }
    assert not math.isnan(summary["auc"])
    with pytest.raises(ValueError, match="per_image must hold at least one dict"):
        summarise_scores([])
    with pytest.raises(TypeError, match=r"per_image\[1\] must be a dict, got list"):
        summarise_scores([{}, []])


def test_thresholded_dice_by_hand(square):
    from evaluation.map_scores import thresholded_dice

    mask = square.astype(bool) if hasattr(square, "astype") else square.bool()
    sal = np.zeros(mask.shape)
    sal[mask] = 1.0
    assert thresholded_dice(sal, mask) == pytest.approx(1.0)
    sal[~mask] = 0.4  # below half the maximum: not marked
    assert thresholded_dice(sal, mask) == pytest.approx(1.0)
    sal[~mask] = 0.6  # above it: the whole image is marked
    area, total = float(mask.sum()), float(mask.size)
    assert thresholded_dice(sal, mask) == pytest.approx(2 * area / (total + area))
    assert thresholded_dice(np.zeros(mask.shape), mask) == 0.0
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        thresholded_dice(sal, mask, level=1.0)
