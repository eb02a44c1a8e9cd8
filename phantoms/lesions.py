"""White-matter lesions: placement, exact masks, soft intensity blobs and bounding boxes.

A lesion is a disc (2D) or ball (3D) of continuous radius ``r`` centred at a sub-pixel point
drawn inside the subject's white matter. Its mask is exactly the pixels whose centre lies
within ``r`` of the lesion centre, so ``mask.sum()`` approximates ``pi r^2`` (``4/3 pi r^3``).
The intensity blob is hyperintense by ``contrast`` inside ``r - softness / 2`` and rolls off
linearly to zero at ``r + softness / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phantom_config import PhantomConfig

__all__ = ["Lesion", "add_lesion", "lesion_mask", "mask_box", "sample_lesion"]


@dataclass(frozen=True)
class Lesion:
    """One lesion in output pixel coordinates (``[x, y(, z)]`` index order)."""

    centre: tuple[float, ...]
    radius: float
    contrast: float


def sample_lesion(rng: np.random.Generator, wm: np.ndarray, cfg: PhantomConfig) -> Lesion:
    """Draw radius and contrast, then a centre in white matter clear of the image edge.

    Args:
        rng: the subject's lesion stream.
        wm: the subject's (warped) white-matter probability, ``[x, y(, z)]``.
        cfg: the cohort config (radius and contrast ranges, white-matter threshold).

    Returns:
        The sampled `Lesion`. Where no pixel passes the white-matter threshold inside the
        allowed region, the centre is the pixel of highest white-matter probability there.
    """
    lo, hi = cfg.lesion_radius_range
    radius = max(1.0, float(rng.uniform(lo, hi)) * cfg.scale)
    contrast = float(rng.uniform(*cfg.lesion_contrast_range))
    jitter = rng.uniform(-0.5, 0.5, wm.ndim)
    margin = int(np.ceil(radius + cfg.lesion_edge_softness * cfg.scale / 2.0)) + 1
    inner = tuple(slice(margin, s - margin) for s in wm.shape)
    region = wm[inner]
    candidates = np.flatnonzero(region > cfg.lesion_wm_threshold)
    flat = int(candidates[rng.integers(len(candidates))]) if len(candidates) else int(np.argmax(region))
    idx = np.array(np.unravel_index(flat, region.shape)) + margin
    centre = tuple(float(v) for v in idx + jitter)
    return Lesion(centre=centre, radius=radius, contrast=contrast)


def _local_distance(
    shape: tuple[int, ...], lesion: Lesion, reach: float
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Distances to the lesion centre within the box of half-width ``reach`` (clipped to the image)."""
    box = tuple(
        slice(max(0, int(np.floor(c - reach))), min(s, int(np.ceil(c + reach)) + 1))
        for c, s in zip(lesion.centre, shape, strict=True)
    )
    axes = [np.arange(b.start, b.stop, dtype=np.float64) - c for b, c in zip(box, lesion.centre, strict=True)]
    d2 = sum(np.meshgrid(*[a * a for a in axes], indexing="ij"))
    return box, np.sqrt(d2)


def lesion_mask(shape: tuple[int, ...], lesion: Lesion) -> np.ndarray:
    """uint8 mask of the pixels whose centre is within ``lesion.radius`` of the lesion centre."""
    mask = np.zeros(shape, np.uint8)
    box, dist = _local_distance(shape, lesion, lesion.radius)
    mask[box] = dist <= lesion.radius
    return mask


def add_lesion(image: np.ndarray, lesion: Lesion, softness: float) -> None:
    """Add the lesion's soft blob to ``image`` in place.

    Args:
        image: float intensities ``[x, y(, z)]``.
        lesion: the lesion.
        softness: roll-off width in output pixels (0 gives a hard disc equal to the mask).
    """
    box, dist = _local_distance(image.shape, lesion, lesion.radius + softness / 2.0)
    if softness > 0:
        profile = np.clip((lesion.radius + softness / 2.0 - dist) / softness, 0.0, 1.0)
    else:
        profile = (dist <= lesion.radius).astype(np.float64)
    image[box] += (lesion.contrast * profile).astype(image.dtype)


def mask_box(mask: np.ndarray) -> list[int]:
    """Bounding box of a non-empty mask: ``[x0, y0(, z0), x1, y1(, z1)]``, upper bounds exclusive.

    Args:
        mask: binary array ``[x, y(, z)]``.

    Returns:
        ``min index`` per axis followed by ``max index + 1`` per axis, as Python ints.

    Raises:
        ValueError: the mask is empty.
    """
    idx = np.argwhere(mask)
    if len(idx) == 0:
        raise ValueError("mask_box needs a non-empty mask, got an all-zero mask")
    return [int(v) for v in idx.min(0)] + [int(v) + 1 for v in idx.max(0)]
