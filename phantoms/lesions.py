"""White-matter lesions: placement, exact masks, soft intensity blobs and bounding boxes.

A lesion is a disc (2D) or ball (3D) of continuous radius ``r`` centred at a sub-pixel point
drawn inside the subject's white matter. Its mask is exactly the pixels whose centre lies
within ``r`` of the lesion centre, so ``mask.sum()`` approximates ``pi r^2`` (``4/3 pi r^3``).
The intensity blob is hyperintense by ``contrast`` inside ``r - softness / 2`` and rolls off
linearly to zero at ``r + softness / 2``.

An image may hold several lesions (`sample_lesions`); they never overlap, so their union is an
instance mask (`instance_mask`: 0 background, ``1..k`` the lesions in placement order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .phantom_config import PhantomConfig

__all__ = [
    "MAX_PLACEMENT_TRIES",
    "Lesion",
    "add_lesion",
    "box_columns",
    "instance_mask",
    "lesion_mask",
    "lesions_separated",
    "mask_box",
    "sample_lesion",
    "sample_lesions",
]

MAX_PLACEMENT_TRIES = 50
"""Draws per additional lesion before `sample_lesions` gives up on placing more in that image."""


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


def lesions_separated(a: Lesion, b: Lesion, softness: float) -> bool:
    """Whether two lesions are clear of each other: centre distance > ``r_a + r_b + softness + 1`` px.

    Each soft blob reaches ``softness / 2`` beyond its radius, so separated lesions have disjoint
    masks and blobs, with at least one pixel between their roll-offs.

    Args:
        a: one lesion.
        b: the other.
        softness: blob roll-off width in output pixels.

    Returns:
        True when the two may share an image.
    """
    distance = float(np.linalg.norm(np.subtract(a.centre, b.centre)))
    return distance > a.radius + b.radius + softness + 1.0


def sample_lesions(rng: np.random.Generator, wm: np.ndarray, cfg: PhantomConfig) -> tuple[list[Lesion], int]:
    """Draw the lesions of one positive image: a first lesion, the count, then the others.

    The first lesion is drawn exactly as `sample_lesion` draws a single-lesion cohort's; the count
    is drawn (uniform in ``cfg.lesions_per_image``) only when that range holds more than one value,
    so the default ``(1, 1)`` consumes ``rng`` exactly as single-lesion cohorts always did. Every
    further lesion is redrawn (radius, contrast and centre) until it is separated from those placed
    (`lesions_separated`), at most `MAX_PLACEMENT_TRIES` times; after that no more are placed.

    Args:
        rng: the subject's lesion stream.
        wm: the subject's (warped) white-matter probability, ``[x, y(, z)]``.
        cfg: the cohort config.

    Returns:
        ``(lesions, drawn)``: the placed lesions in placement order (at least one) and the drawn
        count (``len(lesions) < drawn`` when the image was too crowded).
    """
    lesions = [sample_lesion(rng, wm, cfg)]
    lo, hi = cfg.lesions_per_image
    drawn = int(rng.integers(lo, hi + 1)) if hi > lo else lo
    softness = cfg.lesion_edge_softness * cfg.scale
    while len(lesions) < drawn:
        for _ in range(MAX_PLACEMENT_TRIES):
            candidate = sample_lesion(rng, wm, cfg)
            if all(lesions_separated(candidate, placed, softness) for placed in lesions):
                lesions.append(candidate)
                break
        else:
            break
    return lesions, drawn


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


def instance_mask(shape: tuple[int, ...], lesions: list[Lesion]) -> np.ndarray:
    """uint8 instance mask: 0 background, ``i`` where lesion ``i`` (1-based, list order) covers a pixel.

    With one lesion this equals `lesion_mask`. Lesions are expected to be separated; where two
    overlap anyway the later one's id wins.

    Args:
        shape: image shape ``[x, y(, z)]``.
        lesions: at most 255 lesions.

    Returns:
        The instance mask.

    Raises:
        ValueError: more than 255 lesions (uint8 ids).
    """
    if len(lesions) > 255:
        raise ValueError(f"instance_mask holds at most 255 lesions (uint8 ids), got {len(lesions)}")
    mask = np.zeros(shape, np.uint8)
    for instance, lesion in enumerate(lesions, start=1):
        box, dist = _local_distance(shape, lesion, lesion.radius)
        mask[box][dist <= lesion.radius] = instance
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


def box_columns(ndim: int) -> list[str]:
    """Names of `mask_box`'s entries: ``["x0", "y0", "x1", "y1"]`` (2D) or with ``z0``/``z1`` (3D)."""
    axes = "xyz"[:ndim]
    return [f"{a}0" for a in axes] + [f"{a}1" for a in axes]


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
