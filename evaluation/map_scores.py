"""Scores of a saliency map: does it point at the lesion, overlap it, and carry the decision?

Localisation against a ground-truth mask (:func:`pointing_game`, :func:`topk_iou`) and
faithfulness to the model (:func:`deletion_insertion_auc`, Petsiuk et al. 2018, "RISE"). The
functions take numpy arrays or torch tensors of the image's spatial shape (2D or 3D) and need no
model, except the ``score_fn`` of deletion/insertion. :func:`summarise_scores` averages per-image
results for a report.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((8, 8)); mask[2:4, 2:4] = 1
    >>> pointing_game(mask, mask), topk_iou(mask, mask, fraction=4 / 64)
    (True, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from numbers import Real

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

__all__ = ["deletion_insertion_auc", "pointing_game", "summarise_scores", "thresholded_dice", "topk_iou"]

ArrayLike = np.ndarray | torch.Tensor


def _to_numpy(name: str, value: ArrayLike) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(value).__name__}")
    return value


def _saliency_and_mask(saliency: ArrayLike, mask: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(float saliency, bool mask)`` of the same shape."""
    sal = _to_numpy("saliency", saliency).astype(np.float64)
    region = _to_numpy("mask", mask)
    if sal.shape != region.shape:
        raise ValueError(
            f"saliency and mask must have the same shape, got saliency {sal.shape} and mask {region.shape}"
        )
    if not np.isfinite(sal).all():
        raise ValueError("saliency must be finite everywhere, got NaN or inf values")
    region = region > 0
    if not region.any():
        raise ValueError(f"mask is empty (no pixel > 0 in shape {region.shape}): the score is undefined")
    return sal, region


def pointing_game(saliency: ArrayLike, mask: ArrayLike, tolerance_px: float = 0) -> bool:
    """Whether the map's maximum lies inside the mask (Zhang et al. 2018, "Top-down neural attention").

    With ``tolerance_px > 0`` the mask is first dilated by that many pixels (every pixel within
    that Euclidean distance of the mask counts as inside), as in the original, which allows 15 px
    at ImageNet scale. When several pixels share the maximum, the hit needs at least half of them
    inside; a constant map has no maximum to point with and is a miss.

    Args:
        saliency: map of shape ``(*spatial)``.
        mask: ground-truth region of the same shape (pixels > 0 are inside).
        tolerance_px: dilation radius in pixels (>= 0).

    Returns:
        ``True`` for a hit.

    Raises:
        TypeError: if an input is not an array or tensor.
        ValueError: if the shapes differ (naming both), the mask is empty, the map is not finite, or
            ``tolerance_px`` < 0.

    Example:
        >>> import numpy as np
        >>> sal = np.zeros((8, 8)); sal[0, 0] = 1
        >>> mask = np.zeros((8, 8)); mask[2, 0] = 1
        >>> pointing_game(sal, mask), pointing_game(sal, mask, tolerance_px=2)
        (False, True)
    """
    sal, region = _saliency_and_mask(saliency, mask)
    if not tolerance_px >= 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px!r}")
    if tolerance_px > 0:
        region = distance_transform_edt(~region) <= tolerance_px
    peak = sal.max()
    if sal.min() == peak:
        return False
    return bool(region[sal == peak].mean() >= 0.5)


def thresholded_dice(saliency: ArrayLike, mask: ArrayLike, level: float = 0.5) -> float:
    """Dice of the map thresholded at ``level`` × its maximum against the mask (a weak segmentation).

    Args:
        saliency: map of shape ``(*spatial)`` (e.g. a counterfactual's ``|difference|``).
        mask: ground-truth region of the same shape (pixels > 0 are inside).
        level: threshold as a fraction of the map's maximum, in (0, 1).

    Returns:
        Dice in [0, 1]; 0 for a map without a positive pixel.

    Raises:
        TypeError: if an input is not an array or tensor.
        ValueError: if the shapes differ, the mask is empty, the map is not finite, or ``level``
            is outside (0, 1).

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((4, 4)); mask[0, :2] = 1
        >>> sal = np.zeros((4, 4)); sal[0, :3] = [1.0, 0.9, 0.6]
        >>> thresholded_dice(sal, mask)
        0.8
    """
    sal, region = _saliency_and_mask(saliency, mask)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    peak = float(sal.max())
    if peak <= 0:
        return 0.0
    marked = sal > level * peak
    return float(2 * (marked & region).sum() / (marked.sum() + region.sum()))


def topk_iou(saliency: ArrayLike, mask: ArrayLike, fraction: float = 0.05) -> float:
    """Intersection over union of the map's top ``fraction`` of pixels with the mask.

    The top ``k = max(1, round(fraction * n_pixels))`` pixels are taken (ties broken by position,
    first in C order), so a map equal to the mask scores 1 at ``fraction = mask area / image area``.
    Only pixels of positive saliency count as top pixels: a map that marks fewer than ``k``
    pixels (the infill counterfactual's difference, zero outside the infilled region; a Grad-CAM
    or occlusion map clipped at 0) is scored on the pixels it marks, not on ``k`` minus those
    taken from its zeros in C order — which would be the image's corner, whatever the map says.
    A map with no positive pixel scores 0.

    Args:
        saliency: map of shape ``(*spatial)``.
        mask: ground-truth region of the same shape (pixels > 0 are inside).
        fraction: share of pixels kept, in (0, 1].

    Returns:
        IoU in [0, 1].

    Raises:
        TypeError: if an input is not an array or tensor.
        ValueError: if the shapes differ (naming both), the mask is empty, the map is not finite, or
            ``fraction`` is outside (0, 1].

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((4, 4)); mask[0, :2] = 1
        >>> topk_iou(np.arange(16.0)[::-1].reshape(4, 4), mask, fraction=4 / 16)
        0.5
        >>> topk_iou(mask * 0.5, mask, fraction=4 / 16)  # two marked pixels, not four
        1.0
    """
    sal, region = _saliency_and_mask(saliency, mask)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    flat = sal.ravel()
    k = max(1, round(fraction * flat.size))
    top = np.zeros(flat.size, dtype=bool)
    ranked = np.argsort(-flat, kind="stable")[:k]
    top[ranked[flat[ranked] > 0]] = True
    inside = region.ravel()
    return float((top & inside).sum() / (top | inside).sum())


def deletion_insertion_auc(
    score_fn: Callable[[torch.Tensor], ArrayLike],
    image: ArrayLike,
    saliency: ArrayLike,
    steps: int = 20,
    baseline: float | ArrayLike = 0.0,
    batch_size: int | None = None,
) -> dict:
    """Deletion and insertion curves of a saliency map and their areas (Petsiuk et al. 2018, "RISE").

    Pixels are ranked by saliency (all channels of a pixel together; ties by position). At step
    ``i`` of ``steps`` the top ``round(i / steps * n_pixels)`` pixels are *deleted* — set to
    ``baseline`` — in the deletion curve, and *inserted* — copied from the image onto the baseline —
    in the insertion curve. The areas under ``score_fn`` against the deleted/inserted fraction
    (trapezoid rule on [0, 1]) summarise them: a faithful map has a low deletion and a high
    insertion AUC. Both curves start from the same constant canvas (default 0, the background of
    images scaled to [0, 1]); for RISE's blurred insertion canvas pass a blurred copy of the image
    as ``baseline`` (e.g. ``monai.transforms.GaussianSmooth(sigma=5)(image)``). All ``steps + 1``
    images of a curve are scored in batches of ``batch_size`` (default: all at once).

    Args:
        score_fn: maps a batch ``(B, C, *spatial)`` to ``B`` scores, e.g. the target probability
            (called under ``torch.no_grad()``).
        image: ``(C, *spatial)`` or ``(1, C, *spatial)``.
        saliency: map of shape ``(*spatial)``.
        steps: number of deletion/insertion steps (>= 1).
        baseline: constant, or a tensor broadcastable to ``(C, *spatial)``.
        batch_size: images per ``score_fn`` call (>= 1), default all.

    Returns:
        Dict with ``deletion_auc`` and ``insertion_auc`` (floats), the ``fractions`` and the
        ``deletion_curve`` and ``insertion_curve`` (lists of ``steps + 1`` floats).

    Raises:
        TypeError: if an input is not an array or tensor.
        ValueError: if the map's shape is not the image's spatial shape (naming both), ``steps`` < 1,
            ``batch_size`` < 1, or ``score_fn`` does not return one score per image.

    Example:
        >>> import numpy as np
        >>> image = torch.ones(1, 4, 4); sal = torch.zeros(4, 4); sal[0] = 1
        >>> scores = deletion_insertion_auc(lambda x: x[:, 0, 0].mean(1), image, sal, steps=4)
        >>> scores["deletion_auc"], scores["insertion_auc"]
        (0.125, 0.875)
    """
    img = torch.as_tensor(_to_numpy("image", image)).float()
    sal = torch.as_tensor(_to_numpy("saliency", saliency)).double()
    if img.dim() == sal.dim() + 2 and img.shape[0] == 1:
        img = img[0]
    if img.dim() < 3 or tuple(img.shape[1:]) != tuple(sal.shape):
        raise ValueError(
            f"saliency must have the image's spatial shape, got saliency {tuple(sal.shape)} "
            f"and image {tuple(img.shape)} (expected (C, *spatial) or (1, C, *spatial))"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
    if not bool(torch.isfinite(sal).all()):
        raise ValueError("saliency must be finite everywhere, got NaN or inf values")
    if isinstance(baseline, Real):
        canvas = torch.full_like(img, float(baseline))
    else:
        canvas = torch.as_tensor(_to_numpy("baseline", baseline)).float().expand_as(img)

    n = sal.numel()
    order = torch.from_numpy(np.argsort(-sal.numpy().ravel(), kind="stable").copy())
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    counts = torch.round(torch.linspace(0, 1, steps + 1, dtype=torch.float64) * n).long()
    chosen = rank.reshape(sal.shape)[None] < counts.reshape(-1, *[1] * sal.dim())  # (steps+1, *spatial)
    chosen = chosen[:, None]  # broadcast over channels
    deleted = torch.where(chosen, canvas, img)
    inserted = torch.where(chosen, img, canvas)
    fractions = (counts.double() / n).numpy()

    def curve(batch: torch.Tensor) -> np.ndarray:
        size = batch.shape[0] if batch_size is None else batch_size
        scores = []
        with torch.no_grad():
            for chunk in batch.split(size):
                out = (
                    _to_numpy("score_fn output", torch.as_tensor(score_fn(chunk))).astype(np.float64).ravel()
                )
                if out.size != chunk.shape[0]:
                    raise ValueError(
                        f"score_fn must return one score per image, got {out.size} for a batch of {chunk.shape[0]}"
                    )
                scores.append(out)
        return np.concatenate(scores)

    deletion, insertion = curve(deleted), curve(inserted)
    return {
        "deletion_auc": float(np.trapezoid(deletion, fractions)),
        "insertion_auc": float(np.trapezoid(insertion, fractions)),
        "fractions": fractions.tolist(),
        "deletion_curve": deletion.tolist(),
        "insertion_curve": insertion.tolist(),
    }


def summarise_scores(per_image: Sequence[dict]) -> dict:
    """Mean of every scalar score over images.

    Booleans (pointing-game hits) average to a hit rate; NaN values and entries that are not
    scalars (curves, names) are skipped. A key missing from some images is averaged over the images
    that have it.

    Args:
        per_image: one dict of scores per image.

    Returns:
        ``{key: mean}`` for each scalar key, plus ``n_images``.

    Raises:
        ValueError: if ``per_image`` is empty.
        TypeError: if an entry is not a dict.

    Example:
        >>> summarise_scores([{"hit": True, "iou": 0.5}, {"hit": False, "iou": 0.25}])
        {'hit': 0.5, 'iou': 0.375, 'n_images': 2}
    """
    if len(per_image) == 0:
        raise ValueError("per_image must hold at least one dict of scores, got an empty sequence")
    values: dict[str, list[float]] = {}
    for i, scores in enumerate(per_image):
        if not isinstance(scores, dict):
            raise TypeError(f"per_image[{i}] must be a dict, got {type(scores).__name__}")
        for key, value in scores.items():
            if isinstance(value, torch.Tensor | np.ndarray) and value.ndim == 0:
                value = value.item()
            if isinstance(value, bool | np.bool_ | Real) and not math.isnan(float(value)):
                values.setdefault(str(key), []).append(float(value))
    summary: dict = {key: float(np.mean(v)) for key, v in values.items()}
    summary["n_images"] = len(per_image)
    return summary
