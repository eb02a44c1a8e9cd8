"""Counterfactual explanations for dense predictions: the image without one predicted lesion.

For a predicted lesion — a connected component of a segmentation, or a detection box — the
question is "which part of the image made the model predict *this* lesion?". The answer is the
infill counterfactual of :mod:`evaluation.infill_counterfactuals`, searched for the lesion
instead of an image-level class: the smallest region whose replacement by a reconstruction (the
glass-box autoencoder's, :func:`autoencoder_reconstruction`, or any other infill) brings the
predictor's score *for that lesion* below its threshold. The lesion's score is

* segmentation: the highest lesion probability inside the predicted component (the lesion is
  gone when no voxel of it is still predicted);
* detection: the highest score of the predicted boxes that hit the lesion's box at IoU ≥
  ``match_iou`` (the FROC hit rule of :func:`evaluation.detection_metrics.lesion_hits`).

The lesion score is handed to :func:`~evaluation.infill_counterfactuals.infill_counterfactual`
as the probability of a two-class "model" (logit ``log(s / (1 - s))``), so the search, its
batching and its coarse-then-fine window passes are that module's, unchanged. Predictors are
plain callables, so any network plugs in:

* segmentation: ``predict(images (B, C, *spatial)) -> lesion probabilities (B, *spatial)`` (or
  ``(B, 1, *spatial)``), called with batches of infilled images;
* detection: ``predict(image (1, C, *spatial)) -> (boxes (N, 2 * D), scores (N,))``, corner
  boxes in index units, called one image at a time; or, with ``batched=True``,
  ``predict(images (B, C, *spatial)) -> B (boxes, scores) pairs`` (a MONAI detector's form).

Scores against the true lesion (:func:`score_against_lesion`): *removal* (the lesion's score
falls below the threshold), the *pointing game* (the difference map's maximum lies inside the
true lesion, :func:`~evaluation.map_scores.pointing_game`) and the *IoU* of the difference map
thresholded at half its maximum with the true lesion (from
:func:`~evaluation.map_scores.thresholded_dice`: IoU = Dice / (2 − Dice)).

Example:
    >>> from monai.transforms import MedianSmooth
    >>> image = torch.zeros(1, 1, 16, 16); image[0, 0, 5:8, 9:12] = 1.0
    >>> predict = lambda x: x[:, 0]  # the intensity is the lesion probability
    >>> lesion = segmentation_lesions(predict(image)[0])[0]
    >>> result = segmentation_counterfactual(predict, median_reconstruction(2), image, lesion, window=4, stride=2)
    >>> result.removed, score_against_lesion(result, lesion)["pointing"]
    (True, True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.networks.utils import eval_mode
from torch import nn

from evaluation.detection_metrics import lesion_hits
from evaluation.infill_counterfactuals import InfillCounterfactual, infill_counterfactual
from evaluation.map_scores import pointing_game, summarise_scores, thresholded_dice
from evaluation.saliency_maps import infill_map
from evaluation.segmentation_metrics import LESION_IOU, connected_lesions

__all__ = [
    "DenseCounterfactual",
    "SegmentationPredictor",
    "DetectionPredictor",
    "Reconstructor",
    "autoencoder_reconstruction",
    "median_reconstruction",
    "softmax_lesion_predictor",
    "retinanet_predictor",
    "segmentation_lesions",
    "box_mask",
    "segmentation_counterfactual",
    "detection_counterfactual",
    "score_against_lesion",
    "explain_segmentation",
    "explain_detection",
    "summarise_dense_explanations",
]

SegmentationPredictor = Callable[[torch.Tensor], Any]
"""``images (B, C, *spatial) -> lesion probabilities (B, *spatial) or (B, 1, *spatial)``."""
DetectionPredictor = Callable[[torch.Tensor], Any]
"""``image (1, C, *spatial) -> (boxes (N, 2 * D), scores (N,))``; batched: ``images -> B pairs``."""
Reconstructor = Callable[[torch.Tensor], torch.Tensor]
"""``image (1, C, *spatial) -> infill source of the same shape`` (e.g. the autoencoder's reconstruction)."""

_SCORE_EPS = 1e-6  # lesion scores are clipped to [eps, 1 - eps] before taking their log-odds


@dataclass
class DenseCounterfactual:
    """The counterfactual that removes one predicted lesion.

    Attributes:
        lesion: the predicted lesion's region, ``(*spatial)`` bool (the component, or the box).
        search: the infill counterfactual found for it (image, reconstruction, counterfactual,
            infilled ``region``, ``diff_map``, window count).
        score: the predictor's score for the lesion on the image.
        final_score: the same on the counterfactual.
        threshold: the predictor's decision threshold.
        removed: whether the counterfactual brings the score below the threshold.
        diff_map: ``|counterfactual − image|`` summed over channels, ``(*spatial)``.
    """

    lesion: torch.Tensor
    search: InfillCounterfactual
    score: float
    final_score: float
    threshold: float
    removed: bool
    diff_map: torch.Tensor

    @property
    def counterfactual(self) -> torch.Tensor:
        """The image without the lesion, ``(C, *spatial)``."""
        return self.search.counterfactual


def autoencoder_reconstruction(model: nn.Module) -> Reconstructor:
    """The glass-box autoencoder's reconstruction as an infill source.

    Args:
        model: a network whose forward returns a dict with ``recon`` (e.g.
            :class:`~networks.GlassBoxNet`); run in eval mode without gradients, its mode
            restored afterwards.

    Returns:
        ``image -> model(image)["recon"]``.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8)
        >>> autoencoder_reconstruction(net)(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def reconstruct(image: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), torch.no_grad():
            return model(image)["recon"]

    return reconstruct


def softmax_lesion_predictor(network: nn.Module, lesion_class: int = 1) -> SegmentationPredictor:
    """A segmentation network's lesion probability (softmax over its class logits) as a predictor.

    Args:
        network: maps ``(B, C, *spatial)`` to class logits ``(B, classes, *spatial)`` (e.g.
            :class:`~networks.segmentation.GlassBoxSegmenter`, MONAI's ``UNet``); run in eval mode
            without gradients, its mode restored afterwards.
        lesion_class: the channel holding the lesion.

    Returns:
        ``images -> softmax(network(images), dim=1)[:, lesion_class]``.
    """

    def predict(images: torch.Tensor) -> torch.Tensor:
        with eval_mode(network), torch.no_grad():
            return torch.softmax(network(images), dim=1)[:, lesion_class]

    return predict


def retinanet_predictor(detector: nn.Module, batched: bool = False) -> DetectionPredictor:
    """A MONAI ``RetinaNetDetector`` as a detection predictor.

    Args:
        detector: the detector; run in eval mode without gradients (its mode restored), its
            boxes and scores read under its own ``target_box_key`` and ``pred_score_key``.
        batched: return the batched form (one detector call per batch of infilled images; pass
            ``batched=True`` to :func:`detection_counterfactual` too).

    Returns:
        ``image (1, C, *spatial) -> (boxes, scores)``, or with ``batched``
        ``images (B, C, *spatial) -> [(boxes, scores)] * B``.
    """

    def predict_batch(images: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with eval_mode(detector), torch.no_grad():
            outs = detector(images)
        return [(out[detector.target_box_key], out[detector.pred_score_key]) for out in outs]

    if batched:
        return predict_batch
    return lambda image: predict_batch(image)[0]


def median_reconstruction(radius: int = 3) -> Reconstructor:
    """A model-free infill source: MONAI's median filter (``MedianSmooth``) of the image.

    A median over a window more than twice a finding's size replaces the finding by its
    surroundings while keeping larger structures: a baseline infill for predictors without an
    autoencoder, and a deterministic one for tests.

    Args:
        radius: the filter's radius in pixels (window ``2 * radius + 1``).

    Returns:
        ``image (1, C, *spatial) -> median-filtered image`` of the same shape.

    Raises:
        ValueError: ``radius`` is not an int >= 1.
    """
    from monai.transforms import MedianSmooth

    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"radius must be an int >= 1, got {radius!r}")
    smooth = MedianSmooth(radius=radius)

    def reconstruct(image: torch.Tensor) -> torch.Tensor:
        return _plain(smooth(image[0]))[None]

    return reconstruct


def _plain(value: Any) -> torch.Tensor:
    """A plain float tensor (a MONAI ``MetaTensor`` loses its metadata), detached, on the CPU."""
    tensor = value.as_tensor() if isinstance(value, MetaTensor) else torch.as_tensor(value)
    return tensor.detach().cpu().float()


def _numpy(value: Any) -> np.ndarray:
    """A float64 numpy copy of a tensor, array or nested list."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float64)
    return np.asarray(value, dtype=np.float64)


def _bool_region(region: Any, spatial: Sequence[int], name: str) -> torch.Tensor:
    if isinstance(region, np.ndarray):
        region = torch.from_numpy(region)
    if not isinstance(region, torch.Tensor):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(region).__name__}")
    region = region.detach().cpu()
    if tuple(region.shape) != tuple(spatial):
        raise ValueError(
            f"{name} must have the image's spatial shape {tuple(spatial)}, got {tuple(region.shape)}"
        )
    region = region > 0
    if not bool(region.any()):
        raise ValueError(f"{name} is empty (no voxel > 0): there is no lesion to explain")
    return region


def segmentation_lesions(probabilities: Any, threshold: float = 0.5) -> list[torch.Tensor]:
    """The predicted lesions of a probability map: connected components of ``p >= threshold``.

    Args:
        probabilities: ``(*spatial)`` lesion probabilities (2D or 3D).
        threshold: the decision threshold, in (0, 1).

    Returns:
        One ``(*spatial)`` bool mask per component (full connectivity, as the lesion-wise
        metrics of :mod:`evaluation.segmentation_metrics` count them), largest first.

    Example:
        >>> p = torch.zeros(6, 6); p[0, 0] = 0.9; p[3:5, 3:5] = 0.7
        >>> [int(m.sum()) for m in segmentation_lesions(p)]
        [4, 1]
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    prob = _plain(probabilities)
    labels, count = connected_lesions(prob >= threshold)
    masks = [torch.from_numpy(labels == i) for i in range(1, count + 1)]
    return sorted(masks, key=lambda m: -int(m.sum()))


def box_mask(box: Any, spatial: Sequence[int]) -> torch.Tensor:
    """The voxels a corner box covers: ``[floor(lo), ceil(hi))`` on each axis, clipped to the image.

    Example:
        >>> box_mask([1, 1, 3, 2.5], (4, 4)).int().tolist()
        [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    """
    values = _numpy(box).reshape(-1)
    dims = len(spatial)
    if values.shape != (2 * dims,):
        raise ValueError(
            f"box must have {2 * dims} corner coordinates for a {dims}D image, got {values.tolist()}"
        )
    mask = torch.zeros(*[int(s) for s in spatial], dtype=torch.bool)
    lo = np.clip(np.floor(values[:dims]), 0, spatial).astype(int)
    hi = np.clip(np.ceil(values[dims:]), 0, spatial).astype(int)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = True
    return mask


class _LesionScoreModel(nn.Module):
    """A lesion's score exposed as a two-class classifier, for :func:`infill_counterfactual`.

    ``forward`` scores each image of a batch with ``score_fn`` and returns the logits
    ``[0, log(s / (1 - s))]`` (softmax of class 1 = ``s``) and the image's reconstruction, which
    the search reads from its first call (on the image itself) only.
    """

    def __init__(self, score_fn: Callable[[torch.Tensor], torch.Tensor], recon: torch.Tensor) -> None:
        super().__init__()
        self.score_fn = score_fn
        self.recon = recon

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.score_fn(x).double().clamp(_SCORE_EPS, 1 - _SCORE_EPS)
        logit = (torch.log(scores) - torch.log1p(-scores)).float()
        return {
            "logits": torch.stack([torch.zeros_like(logit), logit], dim=1),
            "recon": self.recon.expand(len(x), *self.recon.shape[1:]),
        }


def _check_image(image: Any) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() not in (4, 5) or image.shape[0] != 1:
        raise ValueError(
            f"image must have shape (1, C, *spatial) with 2 or 3 spatial dims, got {tuple(image.shape)}"
        )
    return _plain(image)


def _reconstruction(reconstruct: Reconstructor, image: torch.Tensor) -> torch.Tensor:
    recon = _plain(reconstruct(image))
    if recon.shape != image.shape:
        raise ValueError(
            f"reconstruct must return the image's shape {tuple(image.shape)}, got {tuple(recon.shape)}"
        )
    return recon


def _probability_maps(predict: SegmentationPredictor, images: torch.Tensor) -> torch.Tensor:
    """``predict(images)`` as ``(B, *spatial)``, refusing any other shape."""
    with torch.no_grad():
        prob = _plain(predict(images))
    spatial = tuple(images.shape[2:])
    if prob.dim() == len(spatial) + 2 and prob.shape[1] == 1:
        prob = prob[:, 0]
    if tuple(prob.shape) != (len(images), *spatial):
        raise ValueError(
            f"predict must return lesion probabilities of shape {(len(images), *spatial)} "
            f"(or with a channel of 1), got {tuple(prob.shape)}"
        )
    return prob


def _search(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    reconstruct: Reconstructor,
    image: torch.Tensor,
    lesion: torch.Tensor,
    threshold: float,
    search: dict[str, Any],
) -> DenseCounterfactual:
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    score = float(score_fn(image)[0])
    if score < threshold:
        raise ValueError(
            f"the lesion's score {score:.4g} is below the threshold {threshold}: the predictor does "
            "not predict it, there is nothing to remove"
        )
    model = _LesionScoreModel(score_fn, _reconstruction(reconstruct, image))
    found = infill_counterfactual(model, image, target_class=1, threshold=threshold, **search)
    final = float(score_fn(found.counterfactual[None])[0])
    return DenseCounterfactual(
        lesion=lesion,
        search=found,
        score=score,
        final_score=final,
        threshold=float(threshold),
        removed=final < threshold,
        diff_map=infill_map(found),
    )


def segmentation_counterfactual(
    predict: SegmentationPredictor,
    reconstruct: Reconstructor,
    image: torch.Tensor,
    lesion: Any,
    threshold: float = 0.5,
    **search: Any,
) -> DenseCounterfactual:
    """The smallest infill found that removes one predicted segmentation lesion.

    Args:
        predict: ``images (B, C, *spatial) -> lesion probabilities (B[, 1], *spatial)``.
        reconstruct: the infill source, e.g. :func:`autoencoder_reconstruction`.
        image: one image, ``(1, C, *spatial)``.
        lesion: the predicted component, ``(*spatial)`` (e.g. from :func:`segmentation_lesions`).
        threshold: the segmentation's decision threshold, in (0, 1).
        **search: ``window``, ``stride``, ``fine_window``, ``fine_stride``, ``max_windows``,
            ``change_tol`` of :func:`~evaluation.infill_counterfactuals.infill_counterfactual`.

    Returns:
        A :class:`DenseCounterfactual`; its score is the highest probability inside ``lesion``.

    Raises:
        TypeError: ``image`` is not a tensor.
        ValueError: bad shapes (named), an empty lesion, a lesion the predictor does not predict
            (its score below ``threshold``), or a search argument out of range.
    """
    image = _check_image(image)
    region = _bool_region(lesion, image.shape[2:], "lesion")

    def score_fn(images: torch.Tensor) -> torch.Tensor:
        prob = _probability_maps(predict, images)
        return prob[:, region].amax(dim=1)

    return _search(score_fn, reconstruct, image, region, threshold, search)


def _as_detections(out: Any, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's ``(boxes, scores)`` as float64 ``(N, 2 * dims)`` and ``(N,)``."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"predict must return (boxes, scores) per image, got {type(out).__name__}")
    boxes = _numpy(out[0]).reshape(-1, 2 * dims)
    scores = _numpy(out[1]).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"predict returned {len(boxes)} boxes but {len(scores)} scores")
    return boxes, scores


def _detections(
    predict: DetectionPredictor, images: torch.Tensor, batched: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(boxes, scores)`` of each image: one call per batch (``batched``) or per image."""
    dims = images.dim() - 2
    with torch.no_grad():
        if not batched:
            return [_as_detections(predict(one), dims) for one in images.split(1)]
        outs = list(predict(images))
    if len(outs) != len(images):
        raise ValueError(
            f"a batched predict must return one (boxes, scores) per image ({len(images)}), got {len(outs)}"
        )
    return [_as_detections(out, dims) for out in outs]


def detection_counterfactual(
    predict: DetectionPredictor,
    reconstruct: Reconstructor,
    image: torch.Tensor,
    box: Any,
    threshold: float = 0.5,
    match_iou: float = LESION_IOU,
    batched: bool = False,
    **search: Any,
) -> DenseCounterfactual:
    """The smallest infill found that removes one detected lesion.

    Args:
        predict: ``image (1, C, *spatial) -> (boxes (N, 2 * D), scores (N,))``.
        reconstruct: the infill source, e.g. :func:`autoencoder_reconstruction`.
        image: one image, ``(1, C, *spatial)``.
        box: the detection to remove, ``[x0, y0(, z0), x1, y1(, z1)]`` in index units.
        threshold: the detector's operating score threshold, in (0, 1).
        match_iou: a predicted box still counts as the lesion when its IoU with ``box`` is at
            least this (the FROC hit rule).
        batched: ``predict`` takes a batch ``(B, C, *spatial)`` and returns ``B`` ``(boxes,
            scores)`` pairs (one call per batch of infilled images instead of one per image).
        **search: see :func:`segmentation_counterfactual`.

    Returns:
        A :class:`DenseCounterfactual` whose ``lesion`` is the box's voxels and whose score is
        the highest score of a predicted box matching ``box``.

    Raises:
        TypeError: ``image`` is not a tensor.
        ValueError: a malformed box or prediction, a box the detector does not predict at
            ``threshold``, or a search argument out of range.
    """
    image = _check_image(image)
    spatial = tuple(image.shape[2:])
    region = _bool_region(box_mask(box, spatial), spatial, "box")
    if not 0.0 < match_iou <= 1.0:
        raise ValueError(f"match_iou must be in (0, 1], got {match_iou!r}")
    target = _numpy(box).reshape(1, -1)

    def score_fn(images: torch.Tensor) -> torch.Tensor:
        scores = [
            float(lesion_hits(boxes, box_scores, target, match_iou)[1][0])
            for boxes, box_scores in _detections(predict, images, batched)
        ]
        return torch.tensor(scores, dtype=torch.float64)

    return _search(score_fn, reconstruct, image, region, threshold, search)


def score_against_lesion(result: DenseCounterfactual, true_lesion: Any, level: float = 0.5) -> dict[str, Any]:
    """Score a counterfactual's difference map against the true lesion.

    Args:
        result: a :class:`DenseCounterfactual`.
        true_lesion: the true lesion's mask, ``(*spatial)`` (a box's voxels: :func:`box_mask`).
        level: the difference map is thresholded at ``level`` × its maximum for the IoU.

    Returns:
        ``removed`` (bool), ``pointing`` (bool: the map's maximum inside the true lesion),
        ``iou`` (thresholded map vs true lesion), ``score``, ``final_score``, ``region_fraction``
        (share of the image infilled).

    Raises:
        ValueError: the true lesion is empty or not of the image's spatial shape.
    """
    truth = _bool_region(true_lesion, result.diff_map.shape, "true_lesion")
    dice = thresholded_dice(result.diff_map, truth, level=level)
    return {
        "removed": bool(result.removed),
        "pointing": pointing_game(result.diff_map, truth),
        "iou": dice / (2.0 - dice),
        "score": result.score,
        "final_score": result.final_score,
        "region_fraction": float(result.search.region_fraction),
    }


def _best_match(region: torch.Tensor, truths: Sequence[torch.Tensor], min_iou: float) -> int | None:
    """Index of the true lesion with the highest IoU above ``min_iou`` with ``region``, or None."""
    best, best_iou = None, min_iou
    for i, truth in enumerate(truths):
        iou = float((region & truth).sum()) / max(1, int((region | truth).sum()))
        if iou > best_iou:
            best, best_iou = i, iou
    return best


def _instances(true_masks: Any, spatial: Sequence[int]) -> list[torch.Tensor]:
    """True lesions as bool masks: a list of masks, or one instance-id / binary map.

    A map with one positive value is binary and split into connected components; a map with
    several holds one lesion per value, in increasing order.
    """
    if isinstance(true_masks, (list, tuple)):
        return [_bool_region(m, spatial, f"true_masks[{i}]") for i, m in enumerate(true_masks)]
    ids = _plain(true_masks)
    if tuple(ids.shape) != tuple(spatial):
        raise ValueError(
            f"true_masks must have the image's spatial shape {tuple(spatial)}, got {tuple(ids.shape)}"
        )
    values = [v for v in torch.unique(ids).tolist() if v > 0]
    if len(values) <= 1:
        labels, count = connected_lesions(ids > 0)
        return [torch.from_numpy(labels == i) for i in range(1, count + 1)]
    return [ids == v for v in values]


def explain_segmentation(
    predict: SegmentationPredictor,
    reconstruct: Reconstructor,
    image: torch.Tensor,
    true_masks: Any,
    threshold: float = 0.5,
    match_iou: float = LESION_IOU,
    **search: Any,
) -> list[dict[str, Any]]:
    """Explain every true-positive lesion of a segmentation and score it against its true lesion.

    Predicted components (:func:`segmentation_lesions`) are matched to true lesions at IoU >
    ``match_iou`` (the lesion-wise rule of :mod:`evaluation.segmentation_metrics`); each matched
    component gets its counterfactual, scored with :func:`score_against_lesion`.

    Args:
        predict: see :func:`segmentation_counterfactual`.
        reconstruct: the infill source.
        image: one image, ``(1, C, *spatial)``.
        true_masks: the true lesions: an instance-id map (0 background), a binary map (split
            into connected components), or a list of masks.
        threshold: the segmentation's decision threshold.
        match_iou: IoU above which a component is a true positive.
        **search: see :func:`segmentation_counterfactual`.

    Returns:
        One score dict per true-positive component, with ``lesion`` (the true lesion's index)
        and ``voxels`` (the component's size) added.
    """
    image = _check_image(image)
    spatial = tuple(image.shape[2:])
    truths = _instances(true_masks, spatial)
    rows = []
    for component in segmentation_lesions(_probability_maps(predict, image)[0], threshold):
        match = _best_match(component, truths, match_iou)
        if match is None:
            continue
        result = segmentation_counterfactual(predict, reconstruct, image, component, threshold, **search)
        rows.append(
            {"lesion": match, "voxels": int(component.sum()), **score_against_lesion(result, truths[match])}
        )
    return rows


def explain_detection(
    predict: DetectionPredictor,
    reconstruct: Reconstructor,
    image: torch.Tensor,
    true_boxes: Any,
    true_masks: Any = None,
    threshold: float = 0.5,
    match_iou: float = LESION_IOU,
    batched: bool = False,
    **search: Any,
) -> list[dict[str, Any]]:
    """Explain every true-positive detection of an image and score it against its true lesion.

    A detection scoring at least ``threshold`` is a true positive when it hits a true box at
    IoU ≥ ``match_iou`` (the FROC rule); each true lesion is explained once, through its
    highest-scoring hit.

    Args:
        predict: see :func:`detection_counterfactual`.
        reconstruct: the infill source.
        image: one image, ``(1, C, *spatial)``.
        true_boxes: ``(G, 2 * D)`` true corner boxes.
        true_masks: optional true lesion masks for the scores (one per box, or an instance-id
            map whose ids follow the boxes' order); default: each box's voxels.
        threshold: the detector's operating threshold.
        match_iou: IoU at or above which a detection hits a true box.
        batched: see :func:`detection_counterfactual`.
        **search: see :func:`segmentation_counterfactual`.

    Returns:
        One score dict per explained lesion, with ``lesion`` (the true box's index) and ``box``
        (the detection explained) added.
    """
    from monai.data.box_utils import box_iou

    image = _check_image(image)
    spatial = tuple(image.shape[2:])
    gts = _numpy(true_boxes).reshape(-1, 2 * len(spatial))
    if true_masks is None:
        truths = [box_mask(b, spatial) for b in gts]
    else:
        truths = _instances(true_masks, spatial)
        if len(truths) != len(gts):
            raise ValueError(f"true_masks hold {len(truths)} lesions but true_boxes {len(gts)}")
    boxes, scores = _detections(predict, image, batched)[0]
    keep = scores >= threshold
    boxes, scores = boxes[keep], scores[keep]
    rows = []
    if len(boxes) == 0 or len(gts) == 0:
        return rows
    hits = np.asarray(box_iou(boxes, gts)) >= match_iou  # (D, G)
    for g in range(len(gts)):
        candidates = np.flatnonzero(hits[:, g])
        if len(candidates) == 0:
            continue
        best = candidates[np.argmax(scores[candidates])]
        result = detection_counterfactual(
            predict, reconstruct, image, boxes[best], threshold, match_iou, batched, **search
        )
        rows.append({"lesion": g, "box": boxes[best].tolist(), **score_against_lesion(result, truths[g])})
    return rows


def summarise_dense_explanations(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Removal rate, pointing share and mean IoU over explained lesions.

    Args:
        rows: score dicts from :func:`explain_segmentation` / :func:`explain_detection`.

    Returns:
        ``removal_rate``, ``pointing_share``, ``mean_iou``, ``lesions`` (count), plus the mean of
        every other scalar score (:func:`~evaluation.map_scores.summarise_scores`).

    Raises:
        ValueError: no rows.

    Example:
        >>> summarise_dense_explanations([{"removed": True, "pointing": True, "iou": 0.5},
        ...                               {"removed": False, "pointing": True, "iou": 0.1}])["removal_rate"]
        0.5
    """
    if len(rows) == 0:
        raise ValueError("rows must hold at least one explained lesion, got none")
    means = summarise_scores([{k: v for k, v in r.items() if k not in ("lesion", "box")} for r in rows])
    means.pop("n_images", None)
    return {
        "removal_rate": means.pop("removed"),
        "pointing_share": means.pop("pointing"),
        "mean_iou": means.pop("iou"),
        "lesions": len(rows),
        **means,
    }
