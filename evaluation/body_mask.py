"""Where the body is in an image, and how much of a difference map lies outside it.

A counterfactual that flips a decision by drawing something outside the anatomy — a corner
marker, a label burnt into the frame — shows a shortcut, not a finding. Without a segmentation
the body is estimated from the image itself: the pixels above a fraction of its intensity range,
holes filled, the largest connected component kept (``scipy.ndimage``; no library offers this
exact heuristic for arbitrary 2D/3D intensity images). It is meant for images with a dark
background (MR, CT after windowing, the phantoms).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["estimate_body_mask", "outside_share"]


def estimate_body_mask(image: torch.Tensor | np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Boolean body mask of one image ``(*spatial)`` (or ``(1, *spatial)``).

    Args:
        image: intensities, background dark.
        fraction: threshold as a fraction of the intensity range above the minimum, in (0, 1).

    Returns:
        Boolean array of the spatial shape: the largest connected bright region, holes filled.

    Raises:
        ValueError: ``fraction`` outside (0, 1).

    Example:
        >>> img = np.zeros((8, 8)); img[2:6, 2:6] = 1.0; img[3, 3] = 0.0; img[0, 7] = 1.0
        >>> mask = estimate_body_mask(img)
        >>> int(mask.sum()), bool(mask[3, 3]), bool(mask[0, 7])
        (16, True, False)
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = np.squeeze(arr.astype(np.float64))
    lo, hi = float(arr.min()), float(arr.max())
    if hi <= lo:
        return np.zeros(arr.shape, bool)
    bright = arr > lo + fraction * (hi - lo)
    labels, count = ndimage.label(bright)
    if count == 0:
        return bright
    sizes = ndimage.sum(bright, labels, index=range(1, count + 1))
    largest = labels == (int(np.argmax(sizes)) + 1)
    return ndimage.binary_fill_holes(largest)


def outside_share(diff: torch.Tensor | np.ndarray, body: np.ndarray) -> float:
    """Share of ``|diff|`` (summed over channels) outside ``body``; 0 for an all-zero difference.

    Example:
        >>> body = np.zeros((4, 4), bool); body[:2] = True
        >>> outside_share(np.ones((1, 4, 4)), body)
        0.5
    """
    arr = diff.detach().cpu().numpy() if isinstance(diff, torch.Tensor) else np.asarray(diff)
    magnitude = np.abs(arr)
    if magnitude.ndim == body.ndim + 1:
        magnitude = magnitude.sum(axis=0)
    total = float(magnitude.sum())
    return float(magnitude[~body].sum()) / total if total > 0 else 0.0
