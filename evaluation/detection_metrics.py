"""Detection metrics: COCO-style mAP (MONAI ``COCOMetric``) and FROC / CPM (MONAI's FROC functions).

- **mAP**: MONAI's ``matching_batch`` (greedy COCO matching by score) and ``COCOMetric``: AP at
  IoU 0.1 (``map_0.1``) and AP averaged over IoU 0.10, 0.15, ..., 0.50 (``map_0.1_0.5``), at
  most ``max_detections`` boxes per image, per class then averaged.
- **FROC**: a detection *hits* a lesion when their IoU (``monai.data.box_utils.box_iou``) is at
  least ``iou_threshold`` (0.1). As in the CAMELYON16 and LUNA16 evaluations, a lesion's score is
  the highest score of the detections that hit it (0 when none does), a detection that hits no
  lesion is a false positive, and a further hit on a lesion already hit is neither. MONAI's
  ``compute_froc_curve_data`` gives sensitivity against false positives per image and
  ``compute_froc_score`` reads it at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per image;
  their mean is the LUNA16 competition performance metric (``cpm``). The one deviation from
  LUNA16 is the hit rule (IoU ≥ 0.1 instead of the detection's centre inside the nodule's
  sphere), so that 2D and 3D boxes of any shape are scored alike.

``compute_froc_curve_data`` never uses the lowest score of all as a threshold (in CAMELYON16
the missed lesions' zeros are that lowest score); :func:`froc_sensitivities` passes a zero-score
false positive along, which no threshold above zero counts, so that a detector whose lowest
score is a hit still gets that hit counted.

Example:
    >>> import numpy as np
    >>> gt = [np.array([[2, 2, 6, 6]])]
    >>> m = detection_metrics([np.array([[2, 2, 6, 6]])], [np.array([0.9])], gt)
    >>> round(m["map_0.1"], 6), m["cpm"]
    (1.0, 1.0)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.apps.detection.metrics.coco import COCOMetric
from monai.apps.detection.metrics.matching import matching_batch
from monai.data.box_utils import box_iou
from monai.metrics.froc import compute_froc_curve_data, compute_froc_score

__all__ = [
    "FROC_FP_RATES",
    "lesion_hits",
    "froc_sensitivities",
    "coco_map",
    "detection_metrics",
]

FROC_FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""False positives per image at which the FROC sensitivity is read (LUNA16)."""

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _as_boxes(value: ArrayLike, dims: int | None, what: str) -> np.ndarray:
    arr = (
        value.detach().cpu().numpy()
        if isinstance(value, torch.Tensor)
        else np.asarray(value, dtype=np.float64)
    )
    arr = arr.astype(np.float64)
    if arr.size == 0:
        return np.zeros((0, 2 * (dims or 2)))
    if arr.ndim != 2 or arr.shape[1] not in (4, 6) or (dims is not None and arr.shape[1] != 2 * dims):
        raise ValueError(f"{what} must be an (N, 4) or (N, 6) array of corner boxes, got shape {arr.shape}")
    if np.any(arr[:, arr.shape[1] // 2 :] < arr[:, : arr.shape[1] // 2]):
        raise ValueError(f"{what} must have upper corners >= lower corners, got {arr.tolist()}")
    return arr


def _as_vector(value: ArrayLike | None, n: int, what: str, default: float = 0.0) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{what} must hold one value per box ({n}), got {arr.shape[0]}")
    return arr


def _check_inputs(
    pred_boxes: Sequence[ArrayLike],
    pred_scores: Sequence[ArrayLike],
    gt_boxes: Sequence[ArrayLike],
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
        raise ValueError(
            "pred_boxes, pred_scores and gt_boxes must have one entry per image, got "
            f"{len(pred_boxes)}, {len(pred_scores)} and {len(gt_boxes)}"
        )
    if not gt_boxes:
        raise ValueError("detection metrics need at least one image, got none")
    gts = [_as_boxes(g, None, f"gt_boxes[{i}]") for i, g in enumerate(gt_boxes)]
    dims = {g.shape[1] // 2 for g in gts if len(g)}
    if len(dims) > 1:
        raise ValueError(f"gt_boxes mix 2D and 3D boxes ({sorted(dims)} spatial dims)")
    dim = dims.pop() if dims else None
    preds = [_as_boxes(p, dim, f"pred_boxes[{i}]") for i, p in enumerate(pred_boxes)]
    scores = [
        _as_vector(s, len(p), f"pred_scores[{i}]").astype(np.float64)
        for i, (s, p) in enumerate(zip(pred_scores, preds, strict=True))
    ]
    if dim is None:  # no lesion at all: give the empty ground truth the predictions' dimension
        pdims = {p.shape[1] for p in preds if len(p)}
        gts = [np.zeros((0, pdims.pop() if pdims else 4)) for _ in gts]
    return preds, scores, gts


def lesion_hits(
    pred_boxes: ArrayLike, pred_scores: ArrayLike, gt_boxes: ArrayLike, iou_threshold: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """One image's false-positive scores and per-lesion scores under the CAMELYON16/LUNA16 rule.

    Args:
        pred_boxes: ``(D, 4|6)`` predicted corner boxes.
        pred_scores: ``(D,)`` their scores.
        gt_boxes: ``(G, 4|6)`` true boxes.
        iou_threshold: IoU at or above which a detection hits a lesion.

    Returns:
        ``(fp_scores, lesion_scores)``: scores of detections that hit no lesion, and for each
        lesion the highest score of a detection hitting it (0 when missed).

    Example:
        >>> fp, tp = lesion_hits([[0, 0, 4, 4], [10, 10, 12, 12]], [0.8, 0.6], [[0, 0, 4, 4], [20, 20, 24, 24]])
        >>> fp.tolist(), tp.tolist()
        ([0.6], [0.8, 0.0])
    """
    preds, scores, gts = _check_inputs([pred_boxes], [pred_scores], [gt_boxes])
    return _hits(preds[0], scores[0], gts[0], iou_threshold)


def _hits(
    pred: np.ndarray, score: np.ndarray, gt: np.ndarray, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    if len(gt) == 0 or len(pred) == 0:
        return score.copy(), np.zeros(len(gt))
    hit = np.asarray(box_iou(pred, gt)) >= iou_threshold  # (D, G)
    lesion_scores = np.where(hit, score[:, None], 0.0).max(axis=0)
    return score[~hit.any(axis=1)], lesion_scores


def froc_sensitivities(
    fp_scores: np.ndarray,
    lesion_scores: np.ndarray,
    num_images: int,
    fp_rates: Sequence[float] = FROC_FP_RATES,
) -> dict[float, float]:
    """Sensitivity at each false-positive rate, from pooled scores (MONAI's FROC functions).

    Args:
        fp_scores: scores of every false positive, all images together.
        lesion_scores: each lesion's score (0 = missed), all images together.
        num_images: images evaluated.
        fp_rates: false positives per image to read the curve at.

    Returns:
        ``rate → sensitivity``; NaN everywhere when there is no lesion.

    Raises:
        ValueError: ``num_images`` < 1.
    """
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an int >= 1, got {num_images!r}")
    if len(lesion_scores) == 0:
        return {float(r): float("nan") for r in fp_rates}
    # the zero-score false positive: see the module docstring
    fps = np.concatenate([np.asarray(fp_scores, dtype=np.float64), [0.0]])
    fps_per_image, sensitivity = compute_froc_curve_data(
        fps, np.asarray(lesion_scores, dtype=np.float64), len(lesion_scores), num_images
    )
    return {float(r): float(compute_froc_score(fps_per_image, sensitivity, (r,))) for r in fp_rates}


def coco_map(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    pred_labels: Sequence[np.ndarray],
    gt_labels: Sequence[np.ndarray],
    max_detections: int = 100,
) -> dict[str, float]:
    """AP at IoU 0.1 and mAP over IoU 0.1:0.5 (step 0.05) with MONAI's ``matching_batch`` and ``COCOMetric``.

    Args:
        pred_boxes: per image, ``(D, 4|6)`` boxes.
        pred_scores: per image, ``(D,)`` scores.
        gt_boxes: per image, ``(G, 4|6)`` boxes.
        pred_labels: per image, ``(D,)`` class indices.
        gt_labels: per image, ``(G,)`` class indices.
        max_detections: boxes per image considered, highest scores first.

    Returns:
        ``{"map_0.1": ..., "map_0.1_0.5": ...}``; NaN without any true box.
    """
    classes = sorted({int(c) for labels in gt_labels for c in np.asarray(labels).reshape(-1)})
    if not classes:
        return {"map_0.1": float("nan"), "map_0.1_0.5": float("nan")}
    names = [str(c) for c in range(max(classes) + 1)]
    metric = COCOMetric(
        classes=names,
        iou_list=(0.1,),
        iou_range=(0.1, 0.5, 0.05),
        max_detection=(max_detections,),
        verbose=False,
    )
    matches = matching_batch(
        iou_fn=box_iou,
        iou_thresholds=metric.iou_thresholds,
        pred_boxes=list(pred_boxes),
        pred_classes=[np.asarray(c).reshape(-1).astype(int) for c in pred_labels],
        pred_scores=list(pred_scores),
        gt_boxes=list(gt_boxes),
        gt_classes=[np.asarray(c).reshape(-1).astype(int) for c in gt_labels],
        max_detections=max_detections,
    )
    logging.getLogger("monai.apps.detection.metrics.coco").disabled = True  # per-class "no results" warnings
    values, _ = metric(matches)
    return {
        "map_0.1": float(values[f"AP_IoU_0.10_MaxDet_{max_detections}"]),
        "map_0.1_0.5": float(values[f"mAP_IoU_0.10_0.50_0.05_MaxDet_{max_detections}"]),
    }


def detection_metrics(
    pred_boxes: Sequence[ArrayLike],
    pred_scores: Sequence[ArrayLike],
    gt_boxes: Sequence[ArrayLike],
    pred_labels: Sequence[ArrayLike] | None = None,
    gt_labels: Sequence[ArrayLike] | None = None,
    iou_threshold: float = 0.1,
    fp_rates: Sequence[float] = FROC_FP_RATES,
    max_detections: int = 100,
) -> dict[str, float]:
    """mAP, FROC sensitivities and CPM of a set of images' detections.

    Args:
        pred_boxes: per image, ``(D, 4|6)`` predicted corner boxes (any array type).
        pred_scores: per image, ``(D,)`` scores in (0, 1].
        gt_boxes: per image, ``(G, 4|6)`` true corner boxes (``[]`` for an image without lesion).
        pred_labels: per image, predicted classes (default all 0).
        gt_labels: per image, true classes (default all 0).
        iou_threshold: the FROC hit rule's IoU (see the module docstring).
        fp_rates: false positives per image the FROC is read at.
        max_detections: boxes per image mAP considers.

    Returns:
        ``map_0.1``, ``map_0.1_0.5``, ``froc_<rate>`` for each rate (e.g. ``froc_0.125``),
        ``cpm`` (their mean), ``sensitivity`` (share of lesions hit by any box) and
        ``fp_per_image`` (all boxes kept); FROC/mAP values are NaN when no image has a lesion.

    Raises:
        ValueError: lists of different lengths, no image, boxes of a wrong shape or with
            upper < lower corners, or ``iou_threshold`` outside (0, 1].
    """
    if isinstance(iou_threshold, bool) or not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
    preds, scores, gts = _check_inputs(pred_boxes, pred_scores, gt_boxes)
    plabels = [
        _as_vector(None if pred_labels is None else pred_labels[i], len(p), f"pred_labels[{i}]").astype(int)
        for i, p in enumerate(preds)
    ]
    glabels = [
        _as_vector(None if gt_labels is None else gt_labels[i], len(g), f"gt_labels[{i}]").astype(int)
        for i, g in enumerate(gts)
    ]
    hits = [_hits(p, s, g, float(iou_threshold)) for p, s, g in zip(preds, scores, gts, strict=True)]
    fp_scores = np.concatenate([h[0] for h in hits])
    lesion_scores = np.concatenate([h[1] for h in hits])
    froc = froc_sensitivities(fp_scores, lesion_scores, len(gts), fp_rates)
    result = coco_map(preds, scores, gts, plabels, glabels, max_detections)
    result.update({f"froc_{rate:g}": value for rate, value in froc.items()})
    result["cpm"] = float(np.mean(list(froc.values())))
    result["sensitivity"] = float((lesion_scores > 0).mean()) if len(lesion_scores) else float("nan")
    result["fp_per_image"] = float(len(fp_scores) / len(gts))
    return result
