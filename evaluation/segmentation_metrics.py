"""Segmentation metrics for binary lesion masks: Dice, HD95, NSD and lesion-wise sensitivity/precision.

Voxel-level scores come from MONAI (:func:`~monai.metrics.compute_dice`,
:func:`~monai.metrics.compute_hausdorff_distance` at the 95th percentile,
:func:`~monai.metrics.compute_surface_dice`); this module fixes what they leave open when a
mask is empty, and adds the lesion-wise counts MONAI has no metric for (connected components
from :func:`scipy.ndimage.label`, full connectivity: 8 neighbours in 2D, 26 in 3D).

Empty masks, per image (``truth`` / ``pred`` empty or not):

============== =============== ======================== ==========================
case           Dice            HD95                     NSD
============== =============== ======================== ==========================
both empty     1               0                        1
one empty      0               the image diagonal       0
neither        MONAI           MONAI                    MONAI
============== =============== ======================== ==========================

The diagonal (in the units of ``spacing``, pixels by default) is the largest distance two
points of the image can have, so a missed or hallucinated mask costs the worst HD95 instead of
leaving the mean (MONAI returns ``inf`` or ``nan`` there).

Lesion-wise (Metrics Reloaded's instance-level counting, matched at IoU > 0.1): a true lesion
is *detected* when some predicted component overlaps it with IoU > 0.1; a predicted component
is *correct* when it overlaps some true lesion with IoU > 0.1. Over a set of images,
sensitivity = detected / true lesions and precision = correct / predicted components, counted
over all lesions (not averaged per image); ``nan`` when the denominator is 0 (no true lesion,
or no predicted component, in the whole set).

NSD (normalised surface Dice, Nikolov et al. 2021) counts boundary points within a tolerance
of the other boundary; the tolerance, :data:`DEFAULT_NSD_TOLERANCE` = 1 pixel (voxel) unless
given, is reported beside the score as ``nsd_tolerance``.

Example:
    >>> import numpy as np
    >>> truth = np.zeros((8, 8), bool); truth[2:4, 2:4] = True
    >>> scores = image_scores(truth, truth)
    >>> scores["dice"], scores["hd95"], scores["nsd"], scores["true_lesions"], scores["detected_lesions"]
    (1.0, 0.0, 1.0, 1, 1)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

__all__ = [
    "DEFAULT_NSD_TOLERANCE",
    "LESION_IOU",
    "connected_lesions",
    "lesion_counts",
    "image_scores",
    "summarise_scores",
    "SegmentationScores",
]

DEFAULT_NSD_TOLERANCE = 1.0
"""NSD tolerance in pixels (voxels), or in the units of ``spacing`` when one is given."""

LESION_IOU = 0.1
"""A predicted component and a true lesion match when their IoU exceeds this (Metrics Reloaded)."""


def _binary(mask: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be a 2D or 3D mask without batch or channel dims, got shape {array.shape}"
        )
    return array


def connected_lesions(mask: np.ndarray | torch.Tensor) -> tuple[np.ndarray, int]:
    """Label the connected components of a binary mask (full connectivity).

    Args:
        mask: 2D or 3D array; nonzero is foreground.

    Returns:
        ``(labels, count)``: component ids 1..count, 0 for background.

    Example:
        >>> connected_lesions(np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]]))[1]  # diagonal neighbours join
        1
    """
    array = _binary(mask, "mask") > 0
    structure = ndimage.generate_binary_structure(array.ndim, array.ndim)
    labels, count = ndimage.label(array, structure=structure)
    return labels, int(count)


def lesion_counts(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    iou_threshold: float = LESION_IOU,
    truth_instances: bool = False,
) -> dict[str, int]:
    """Count true lesions, detected ones, predicted components and correct ones in one image.

    Args:
        pred: binary predicted mask (2D or 3D; nonzero is lesion).
        truth: the true mask: binary (split into connected components) or, with
            ``truth_instances``, instance ids (0 background, 1..k one per lesion).
        iou_threshold: a pair matches when its IoU exceeds this.
        truth_instances: read ``truth`` as instance ids instead of splitting it into components.

    Returns:
        ``true_lesions``, ``detected_lesions``, ``pred_lesions``, ``correct_lesions``.

    Raises:
        ValueError: if the shapes differ or ``iou_threshold`` is not in [0, 1).
    """
    pred_array, truth_array = _binary(pred, "pred"), _binary(truth, "truth")
    if pred_array.shape != truth_array.shape:
        raise ValueError(
            f"pred and truth must have the same shape, got {pred_array.shape} and {truth_array.shape}"
        )
    if not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold!r}")
    pred_labels, n_pred = connected_lesions(pred_array)
    if truth_instances:
        ids = np.unique(truth_array[truth_array > 0])
        truth_labels = np.searchsorted(ids, truth_array) + 1
        truth_labels[truth_array <= 0] = 0
        n_true = len(ids)
    else:
        truth_labels, n_true = connected_lesions(truth_array)
    # overlap[i, j]: voxels of true lesion i (0 = background) inside predicted component j
    overlap = np.bincount(
        (truth_labels.astype(np.int64) * (n_pred + 1) + pred_labels).ravel(),
        minlength=(n_true + 1) * (n_pred + 1),
    ).reshape(n_true + 1, n_pred + 1)
    sizes_true, sizes_pred = overlap.sum(axis=1)[1:], overlap.sum(axis=0)[1:]
    inter = overlap[1:, 1:]
    union = sizes_true[:, None] + sizes_pred[None, :] - inter
    matched = inter > iou_threshold * np.maximum(union, 1)
    return {
        "true_lesions": n_true,
        "detected_lesions": int(matched.any(axis=1).sum()),
        "pred_lesions": n_pred,
        "correct_lesions": int(matched.any(axis=0).sum()),
    }


def image_scores(
    pred: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor,
    spacing: Sequence[float] | float | None = None,
    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE,
    iou_threshold: float = LESION_IOU,
    truth_instances: bool = False,
) -> dict[str, float]:
    """Dice, HD95, NSD and lesion counts of one image (empty masks as the module docstring says).

    Args:
        pred: binary predicted mask, 2D or 3D, no batch or channel dim.
        truth: the true mask (binary, or instance ids with ``truth_instances``).
        spacing: voxel size per axis (or one number); ``None``: 1, distances in pixels.
        nsd_tolerance: NSD boundary tolerance in the units of ``spacing`` (pixels by default).
        iou_threshold: IoU above which a component matches a lesion.
        truth_instances: see :func:`lesion_counts`.

    Returns:
        ``dice``, ``hd95``, ``nsd`` (floats) and the counts of :func:`lesion_counts`.

    Raises:
        ValueError: if the shapes differ or ``nsd_tolerance`` is not > 0.
    """
    if not nsd_tolerance > 0:
        raise ValueError(f"nsd_tolerance must be > 0, got {nsd_tolerance!r}")
    counts = lesion_counts(pred, truth, iou_threshold=iou_threshold, truth_instances=truth_instances)
    p = torch.as_tensor(_binary(pred, "pred") > 0)[None, None].float()
    t = torch.as_tensor(_binary(truth, "truth") > 0)[None, None].float()
    dims = p.ndim - 2
    steps = np.broadcast_to(np.asarray(1.0 if spacing is None else spacing, dtype=float), (dims,))
    has_pred, has_truth = bool(p.any()), bool(t.any())
    if has_pred and has_truth:
        dice = float(compute_dice(p, t, include_background=True, ignore_empty=False))
        spacing_arg = [float(s) for s in steps]
        with warnings.catch_warnings():  # MONAI 1.5 warns about its own internal use of a deprecated argument
            warnings.simplefilter("ignore", FutureWarning)
            hd95 = float(
                compute_hausdorff_distance(p, t, include_background=True, percentile=95, spacing=spacing_arg)
            )
            nsd = float(
                compute_surface_dice(p, t, [nsd_tolerance], include_background=True, spacing=spacing_arg)
            )
    elif has_pred or has_truth:
        dice, nsd = 0.0, 0.0
        hd95 = float(math.sqrt(sum((s * n) ** 2 for s, n in zip(steps, p.shape[2:], strict=True))))
    else:
        dice, hd95, nsd = 1.0, 0.0, 1.0
    return {"dice": dice, "hd95": hd95, "nsd": nsd, **counts}


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def summarise_scores(
    scores: Iterable[Mapping[str, float]], nsd_tolerance: float = DEFAULT_NSD_TOLERANCE
) -> dict[str, float]:
    """Aggregate per-image scores: mean Dice/HD95/NSD, lesion-wise sensitivity and precision.

    Args:
        scores: :func:`image_scores` results.
        nsd_tolerance: the tolerance they were computed with (reported as ``nsd_tolerance``).

    Returns:
        ``dice``, ``hd95``, ``nsd`` (means over images), ``nsd_tolerance``,
        ``lesion_sensitivity``, ``lesion_precision`` (pooled counts; ``nan`` when undefined),
        the four pooled counts and ``images``.

    Raises:
        ValueError: if ``scores`` is empty.

    Example:
        >>> summarise_scores([{"dice": 1.0, "hd95": 0.0, "nsd": 1.0, "true_lesions": 2, "detected_lesions": 1,
        ...                    "pred_lesions": 1, "correct_lesions": 1}])["lesion_sensitivity"]
        0.5
    """
    rows = list(scores)
    if not rows:
        raise ValueError("scores must hold at least one image's scores, got none")
    out: dict[str, float] = {k: float(np.mean([r[k] for r in rows])) for k in ("dice", "hd95", "nsd")}
    out["nsd_tolerance"] = float(nsd_tolerance)
    totals = {
        k: int(sum(r[k] for r in rows))
        for k in ("true_lesions", "detected_lesions", "pred_lesions", "correct_lesions")
    }
    out["lesion_sensitivity"] = _ratio(totals["detected_lesions"], totals["true_lesions"])
    out["lesion_precision"] = _ratio(totals["correct_lesions"], totals["pred_lesions"])
    out.update({k: float(v) for k, v in totals.items()})
    out["images"] = float(len(rows))
    return out


def _lesion_mask(x: Any) -> torch.Tensor:
    """Channel-first ``x`` as a lesion mask: argmax > 0 for ``C >= 2`` (logits, one-hot), else ``x[0] > 0``."""
    x = torch.as_tensor(x)
    return x.argmax(0) > 0 if x.shape[0] > 1 else x[0] > 0


class SegmentationScores(Metric):
    """Ignite adapter: :func:`image_scores` per image, :func:`summarise_scores` at the end.

    ``output_transform`` must return ``(pred, truth)``: batches or lists of channel-first
    images. Each is read as a lesion mask: with ``C >= 2`` channels (class logits,
    probabilities or one-hot) the argmax class > 0 is lesion; with one channel, nonzero is
    lesion. Attached under a name, the summary's entries appear in ``engine.state.metrics`` as
    ``<prefix><key>`` (the dict itself is not stored, so loggers see numbers only).

    Args:
        output_transform: engine output → ``(pred, truth)``.
        prefix: put before each key (``"val_"``).
        nsd_tolerance: NSD tolerance in pixels (voxels).
        spacing: voxel size per axis, or ``None`` (pixels).
        device: ignite's metric device.
    """

    def __init__(
        self,
        output_transform: Any = lambda x: x,
        prefix: str = "",
        nsd_tolerance: float = DEFAULT_NSD_TOLERANCE,
        spacing: Sequence[float] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.prefix = prefix
        self.nsd_tolerance = float(nsd_tolerance)
        self.spacing = spacing
        super().__init__(output_transform=output_transform, device=device)

    def reset(self) -> None:
        self._scores: list[dict[str, float]] = []

    def update(self, output: Sequence[Any]) -> None:
        for p, t in zip(output[0], output[1], strict=True):
            self._scores.append(
                image_scores(
                    _lesion_mask(p), _lesion_mask(t), spacing=self.spacing, nsd_tolerance=self.nsd_tolerance
                )
            )

    def compute(self) -> dict[str, float]:
        scores = self._scores
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # each rank scored its share of the images: pool them (ignite syncs only tensor states)
            shares: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(shares, scores)
            scores = [row for share in shares for row in share]
        return summarise_scores(scores, nsd_tolerance=self.nsd_tolerance)

    def completed(self, engine: Any, name: str) -> None:
        """Store each summary entry as ``engine.state.metrics[prefix + key]``."""
        engine.state.metrics.update({self.prefix + k: v for k, v in self.compute().items()})
