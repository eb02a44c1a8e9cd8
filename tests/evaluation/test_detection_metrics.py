"""Detection metrics against hand-computed cases (mAP, FROC sensitivities, CPM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.detection_metrics import FROC_FP_RATES, detection_metrics, froc_sensitivities, lesion_hits

BOX_A = [2, 2, 6, 6]
BOX_B = [20, 20, 26, 26]
FAR = [40, 40, 44, 44]


@pytest.mark.parametrize("dims", [2, 3])
def test_perfect_detector_scores_one(dims):
    lift = (lambda b: b) if dims == 2 else (lambda b: b[:2] + [3] + b[2:] + [7])
    gt = [np.array([lift(BOX_A)]), np.array([lift(BOX_B)]), np.zeros((0, 2 * dims))]
    scores = [np.array([0.9]), np.array([0.4]), np.array([])]
    m = detection_metrics([g.copy() for g in gt], scores, gt)
    assert m["map_0.1"] == pytest.approx(1.0)
    assert m["map_0.1_0.5"] == pytest.approx(1.0)
    assert m["cpm"] == pytest.approx(1.0)
    assert all(m[f"froc_{r:g}"] == pytest.approx(1.0) for r in FROC_FP_RATES)
    assert m["sensitivity"] == 1.0 and m["fp_per_image"] == 0.0


def test_one_false_positive_per_image_known_sensitivities():
    # image 1: lesion A found at 0.9, a false positive at 0.6; image 2: lesion B found at 0.3, a false
    # positive at 0.5. Thresholds: 0.9 -> 0 FP/img, sens 1/2; 0.6 -> 1/2 FP/img, 1/2; 0.5 -> 1 FP/img,
    # 1/2; 0.3 -> 1 FP/img, 2/2. So sensitivity 1/2 at 1/8, 1/4, 1/2 FP/img and 1 from 1 FP/img on.
    preds = [np.array([BOX_A, FAR]), np.array([BOX_B, FAR])]
    scores = [np.array([0.9, 0.6]), np.array([0.3, 0.5])]
    gt = [np.array([BOX_A]), np.array([BOX_B])]
    m = detection_metrics(preds, scores, gt)
    expected = {0.125: 0.5, 0.25: 0.5, 0.5: 0.5, 1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0}
    for rate, value in expected.items():
        assert m[f"froc_{rate:g}"] == pytest.approx(value)
    assert m["cpm"] == pytest.approx((3 * 0.5 + 4 * 1.0) / 7)
    assert m["fp_per_image"] == 1.0
    # ranked by score: TP(0.9), FP(0.6), FP(0.5), TP(0.3): precision 1 at recall 1/2, 1/2 at recall 1;
    # COCO's 101-point interpolated AP = (51 * 1 + 50 * 0.5) / 101
    assert m["map_0.1"] == pytest.approx((51 + 25) / 101)


def test_false_positive_above_the_hit_gives_ap_one_half():
    m = detection_metrics([np.array([FAR, BOX_A])], [np.array([0.9, 0.5])], [np.array([BOX_A])])
    assert m["map_0.1"] == pytest.approx(0.5)  # precision 1/2 at every recall level
    # at 1 FP/image the lesion is found; below, not at all
    assert m["froc_0.5"] == pytest.approx(0.0) and m["froc_1"] == pytest.approx(1.0)


def test_map_over_iou_range_counts_thresholds_the_match_passes():
    # prediction [2, 2, 6, 4] vs truth [2, 2, 6, 6]: IoU 8/16 = 0.5 -> matched at every threshold 0.1..0.5;
    # [2, 2, 6, 3]: IoU 4/16 = 0.25 -> matched at 0.10, 0.15, 0.20, 0.25 (4 of 9 thresholds)
    gt = [np.array([BOX_A])]
    assert detection_metrics([np.array([[2, 2, 6, 4]])], [np.array([0.8])], gt)[
        "map_0.1_0.5"
    ] == pytest.approx(1.0)
    m = detection_metrics([np.array([[2, 2, 6, 3]])], [np.array([0.8])], gt)
    assert m["map_0.1"] == pytest.approx(1.0)
    assert m["map_0.1_0.5"] == pytest.approx(4 / 9)


def test_missed_lesion_and_duplicate_hit():
    # a second box on lesion A is neither TP nor FP (LUNA16); lesion B is missed
    fp, tp = lesion_hits(torch.tensor([BOX_A, [2, 2, 6, 5]]), torch.tensor([0.7, 0.8]), [BOX_A, BOX_B])
    assert fp.tolist() == [] and tp.tolist() == pytest.approx([0.8, 0.0])
    m = detection_metrics([[BOX_A]], [[0.7]], [[BOX_A, BOX_B]])
    assert m["sensitivity"] == 0.5 and m["cpm"] == pytest.approx(0.5)


def test_no_lesion_anywhere_gives_nan():
    m = detection_metrics([np.array([FAR])], [np.array([0.5])], [np.zeros((0, 4))])
    assert np.isnan(m["cpm"]) and np.isnan(m["map_0.1"]) and m["fp_per_image"] == 1.0


def test_froc_lowest_score_hit_counts():
    # MONAI's curve skips the lowest score as a threshold; the zero-score sentinel keeps this hit
    assert froc_sensitivities(np.array([]), np.array([0.2]), num_images=1)[0.125] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pred_boxes": [], "pred_scores": [], "gt_boxes": []}, "at least one image"),
        (
            {"pred_boxes": [[BOX_A]], "pred_scores": [[0.5]], "gt_boxes": [[BOX_A], [BOX_B]]},
            "one entry per image",
        ),
        (
            {"pred_boxes": [[[0, 0, 4]]], "pred_scores": [[0.5]], "gt_boxes": [[BOX_A]]},
            r"pred_boxes\[0\] must be",
        ),
        ({"pred_boxes": [[BOX_A]], "pred_scores": [[0.5, 0.2]], "gt_boxes": [[BOX_A]]}, "one value per box"),
        ({"pred_boxes": [[[6, 6, 2, 2]]], "pred_scores": [[0.5]], "gt_boxes": [[BOX_A]]}, "upper corners"),
        (
            {"pred_boxes": [[BOX_A]], "pred_scores": [[0.5]], "gt_boxes": [[BOX_A]], "iou_threshold": 0},
            "iou_threshold",
        ),
    ],
)
def test_bad_input_is_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detection_metrics(**kwargs)
