"""Tests for evaluation/segmentation_metrics.py against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from evaluation.segmentation_metrics import (
    SegmentationScores,
    connected_lesions,
    image_scores,
    lesion_counts,
    summarise_scores,
)


def square(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_shifted_square_dice_hd95_and_nsd_by_hand():
    truth = square((10, 10), (2, 6), (2, 6))  # 16 px
    pred = square((10, 10), (2, 6), (3, 7))  # shifted one column: 12 px shared
    scores = image_scores(pred, truth)
    assert scores["dice"] == pytest.approx(2 * 12 / 32)
    # both 12-pixel boundary rings: half their points lie on the other ring, half one pixel away
    assert scores["hd95"] == pytest.approx(1.0)
    assert scores["nsd"] == pytest.approx(1.0)  # every boundary point within the 1 px tolerance
    assert image_scores(pred, truth, nsd_tolerance=0.5)["nsd"] == pytest.approx(12 / 24)
    # spacing scales distances: columns 2 mm apart
    assert image_scores(pred, truth, spacing=(1.0, 2.0))["hd95"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("pred_empty", "truth_empty", "dice", "nsd"),
    [(True, True, 1.0, 1.0), (True, False, 0.0, 0.0), (False, True, 0.0, 0.0)],
)
def test_empty_masks_follow_the_stated_definitions(pred_empty, truth_empty, dice, nsd):
    mask = square((4, 5, 6), (1, 3), (1, 3))
    empty = np.zeros_like(mask)
    scores = image_scores(
        empty if pred_empty else mask, empty if truth_empty else mask, spacing=(2.0, 1.0, 1.0)
    )
    assert scores["dice"] == dice and scores["nsd"] == nsd
    # both empty: 0; one empty: the image diagonal in mm (8 x 5 x 6 mm)
    assert scores["hd95"] == (0.0 if pred_empty and truth_empty else pytest.approx(math.sqrt(64 + 25 + 36)))


def test_lesion_matching_at_iou_above_a_tenth():
    truth = np.zeros((10, 10), int)
    truth[1:4, 1:4] = 1  # lesion A, 9 px
    truth[8, 8] = 1  # lesion B, 1 px
    pred = np.zeros((10, 10), int)
    pred[2, 2] = 1  # inside A: IoU 1/9 > 0.1 -> A detected, this component correct
    pred[6, 0] = 1  # overlaps nothing: a false positive; B is missed
    assert lesion_counts(pred, truth) == {
        "true_lesions": 2,
        "detected_lesions": 1,
        "pred_lesions": 2,
        "correct_lesions": 1,
    }
    ten = square((6, 6), (1, 3), (0, 5))  # 10 px: one pixel inside has IoU exactly 0.1, not above
    one = np.zeros((6, 6), bool)
    one[1, 1] = True
    assert lesion_counts(one, ten)["detected_lesions"] == 0
    assert lesion_counts(one, ten, iou_threshold=0.05)["detected_lesions"] == 1


def test_components_join_diagonally_and_instances_stay_apart():
    assert connected_lesions(np.eye(3))[1] == 1
    assert connected_lesions(np.eye(3)[None].repeat(2, 0))[1] == 1  # 3D, 26-connectivity
    touching = np.zeros((4, 6), int)
    touching[1:3, 1:3] = 1
    touching[1:3, 3:5] = 2
    pred = touching > 0
    assert lesion_counts(pred, touching)["true_lesions"] == 1
    counts = lesion_counts(pred, touching, truth_instances=True)
    # the prediction covers both lesions: IoU 4/8 with each, both detected by its one component
    assert counts == {"true_lesions": 2, "detected_lesions": 2, "pred_lesions": 1, "correct_lesions": 1}


def test_summary_pools_lesion_counts_and_marks_undefined_ratios():
    a = image_scores(square((8, 8), (1, 3), (1, 3)), square((8, 8), (1, 3), (1, 3)))
    b = image_scores(np.zeros((8, 8)), square((8, 8), (4, 6), (4, 6)))
    summary = summarise_scores([a, b], nsd_tolerance=1.0)
    assert summary["dice"] == pytest.approx(0.5)
    assert summary["hd95"] == pytest.approx(math.sqrt(128) / 2)
    assert summary["lesion_sensitivity"] == pytest.approx(0.5)
    assert summary["lesion_precision"] == pytest.approx(1.0)
    assert summary["nsd_tolerance"] == 1.0 and summary["images"] == 2
    none = summarise_scores([image_scores(np.zeros((4, 4)), np.zeros((4, 4)))])
    assert math.isnan(none["lesion_sensitivity"]) and math.isnan(none["lesion_precision"])
    with pytest.raises(ValueError, match="at least one image"):
        summarise_scores([])


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"same shape, got \(4, 4\) and \(4, 5\)"):
        image_scores(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="2D or 3D mask"):
        image_scores(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="nsd_tolerance must be > 0"):
        image_scores(np.zeros((4, 4)), np.zeros((4, 4)), nsd_tolerance=0)


def test_ignite_adapter_reads_logits_and_reports_each_key():
    truth = torch.zeros(2, 1, 8, 8)
    truth[0, 0, 2:4, 2:4] = 1
    logits = torch.zeros(2, 2, 8, 8)
    logits[0, 1, 2:4, 2:4] = 5.0  # image 0: exact; image 1: both empty
    engine = Engine(lambda e, batch: batch)
    SegmentationScores(prefix="val_").attach(engine, "seg")
    engine.run([(logits, truth)], max_epochs=1)
    metrics = engine.state.metrics
    assert (
        metrics["val_dice"] == 1.0 and metrics["val_hd95"] == 0.0 and metrics["val_lesion_sensitivity"] == 1.0
    )
    assert metrics["val_images"] == 2 and "seg" not in metrics
    # one-hot truth (2 channels) reads the same as a 1-channel mask
    engine.run([(logits, torch.cat([1 - truth, truth], 1))], max_epochs=1)
    assert engine.state.metrics["val_dice"] == 1.0
