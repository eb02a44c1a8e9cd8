"""Lesions of the contrast phantoms: several per image, kinetics, T1/T2 contrasts, enhancement blobs.

Builds on `phantoms.lesions` (the `Lesion` disc or ball, its exact mask and soft blob): each
image holds 0..N lesions of sizes from small to large that never touch; each is slightly T1
hypo-intense before contrast, bright on the T2-like target, and, with probability
``enhancing_fraction``, enhances with a kinetic class and a peak (`phantoms.contrast_kinetics`).
The enhancement blob rolls off *inside* the lesion's radius, so the enhancement map is exactly
zero outside the lesion masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .contrast_config import KINETICS, ContrastPhantomConfig
from .lesions import Lesion, add_lesion

__all__ = ["ContrastLesion", "add_enhancement", "sample_contrast_lesions", "t2_like"]

# T2-like contrast as a function of the template T1 (white matter = 1): CSF bright, WM dark
_T2_T1_KNOTS = (0.0, 0.05, 0.3, 0.75, 1.0, 1.2)
_T2_VALUES = (0.0, 0.03, 0.7, 0.45, 0.25, 0.22)


@dataclass(frozen=True)
class ContrastLesion:
    """One lesion of a contrast phantom (output pixel coordinates, ``[x, y(, z)]`` order).

    Attributes:
        lesion: centre, radius and pre-contrast T1 contrast (negative: hypo-intense).
        enhancing: whether it takes up contrast.
        kinetics: ``"persistent" | "plateau" | "washout"``, or ``"none"`` when not enhancing.
        peak_enhancement: peak of its ``E(t)`` (0 when not enhancing).
        t2_contrast: intensity added on the T2-like target (``dce2d_t2``).
    """

    lesion: Lesion
    enhancing: bool
    kinetics: str
    peak_enhancement: float
    t2_contrast: float


def sample_contrast_lesions(
    rng: np.random.Generator, wm: np.ndarray, cfg: ContrastPhantomConfig
) -> list[ContrastLesion]:
    """Draw the number of lesions, then each lesion's size, contrasts, kinetics and centre.

    Centres lie where the white-matter probability exceeds ``cfg.lesion_wm_threshold``, clear of
    the image edge and at least ``lesion_gap`` (px at size 64) from every earlier lesion's disc.
    When no such place is left, the image keeps the lesions placed so far.

    Args:
        rng: the subject's contrast-lesion stream.
        wm: the subject's warped white-matter probability ``[x, y(, z)]``.
        cfg: the cohort config.

    Returns:
        The placed lesions, in id order.
    """
    lo, hi = cfg.lesions_per_image
    count = int(rng.integers(lo, hi + 1))
    gap = cfg.lesion_gap * cfg.scale
    placed: list[ContrastLesion] = []
    for _ in range(count):
        radius = max(1.0, float(rng.uniform(*cfg.lesion_radius_range)) * cfg.scale)
        t1_contrast = float(rng.uniform(*cfg.lesion_t1_contrast_range))
        t2_contrast = float(rng.uniform(*cfg.lesion_t2_contrast_range))
        enhancing = bool(rng.random() < cfg.enhancing_fraction)
        kinetics = KINETICS[
            min(int(np.searchsorted(np.cumsum(cfg.kinetics_fractions), rng.random(), "right")), 2)
        ]
        peak = float(rng.uniform(*cfg.peak_enhancement_range))
        jitter = rng.uniform(-0.5, 0.5, wm.ndim)
        margin = int(np.ceil(radius + (cfg.lesion_edge_softness * cfg.scale) / 2.0)) + 1
        inner = tuple(slice(margin, s - margin) for s in wm.shape)
        ok = wm[inner] > cfg.lesion_wm_threshold
        idx = np.argwhere(ok).astype(np.float64) + margin + jitter
        for other in placed:
            dist = np.sqrt(((idx - np.asarray(other.lesion.centre)) ** 2).sum(1))
            idx = idx[dist >= radius + other.lesion.radius + gap]
        if len(idx) == 0:
            break
        centre = tuple(float(v) for v in idx[int(rng.integers(len(idx)))])
        placed.append(
            ContrastLesion(
                lesion=Lesion(centre=centre, radius=radius, contrast=t1_contrast),
                enhancing=enhancing,
                kinetics=kinetics if enhancing else "none",
                peak_enhancement=peak if enhancing else 0.0,
                t2_contrast=t2_contrast,
            )
        )
    return placed


def t2_like(t1: np.ndarray, tissue_intensity: float) -> np.ndarray:
    """T2-like tissue signal from the warped T1 anatomy (before lesions).

    A piecewise-linear map of the relative T1 (white matter = 1): background stays dark, CSF
    (T1 about 0.3) becomes bright (0.7), grey matter intermediate (0.45), white matter dark (0.25).

    Args:
        t1: warped T1 with white matter at ``tissue_intensity``.
        tissue_intensity: the white-matter T1 intensity.

    Returns:
        float32 array of ``t1``'s shape in [0, 0.7].
    """
    rel = t1.astype(np.float64) / tissue_intensity
    return np.interp(rel, _T2_T1_KNOTS, _T2_VALUES).astype(np.float32)


def add_enhancement(image: np.ndarray, les: ContrastLesion, value: float, softness: float) -> None:
    """Add ``value`` inside the lesion's disc in place, rolling off to 0 at its radius.

    The roll-off lies inside the radius, so nothing is added outside the lesion's mask
    (`phantoms.lesions.lesion_mask`).

    Args:
        image: float map ``[x, y(, z)]``.
        les: the lesion.
        value: enhancement on the disc's inner plateau.
        softness: roll-off width in output pixels.
    """
    inner = Lesion(les.lesion.centre, max(les.lesion.radius - softness / 2.0, 0.0), value)
    add_lesion(image, inner, softness)
