"""Vessel density maps of the DCE phantoms: the structures that enhance strongly after contrast.

Two blood-pool structures are drawn on the template grid (`phantoms.anatomy.template_grid`), once
per grid, and warped into each subject with the subject's own anatomy warp:

- the superior sagittal sinus: a tube of radius ``r`` on the mid-sagittal plane, running just
  inside the brain's outline (brain2d slab: the anterior and posterior midline spots of the
  axial slice; brain3d: the superior convexity, above the ventricle level);
- the choroid plexus: one spot of radius ``r`` per hemisphere at the most posterior point of the
  lateral ventricles (the atrium) — brain2d: a column through the slab, brain3d: a ball.

The density is ``clip((r - d) / softness, 0, 1)`` with ``d`` the distance to the structure's
centre line or point, so its support (density > 0) is the vessel mask and the enhancement
``peak * E(t) * density`` is exactly zero outside it.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

import numpy as np
from scipy import ndimage as ndi

from .anatomy import AnatomyParams, TemplateGrid, template_grid, warp_anatomy
from .phantom_config import PhantomConfig

__all__ = ["grid_vessel_density", "subject_vessel_density"]

_BRAIN_LEVEL = 0.1  # template T1 (white matter = 1) above which a voxel is brain
_CSF_LEVEL = 0.55  # ... below which a brain voxel with little white matter is CSF
_CSF_WM_MAX = 0.3


def _profile(dist: np.ndarray, radius: float, softness: float) -> np.ndarray:
    if softness > 0:
        return np.clip((radius - dist) / softness, 0.0, 1.0)
    return (dist < radius).astype(np.float64)


def _brain_mask(t1: np.ndarray) -> np.ndarray:
    brain = np.zeros(t1.shape, bool)
    for k in range(t1.shape[2]):  # per axial slice: a slab's top and bottom are not outlines
        brain[:, :, k] = ndi.binary_fill_holes(t1[:, :, k] > _BRAIN_LEVEL)
    return brain


@lru_cache(maxsize=8)
def grid_vessel_density(size: int, kind: str, slab_half: int, radius: float, softness: float) -> np.ndarray:
    """Vessel density on the template grid ``[x, y, z]`` (brain2d: the slab).

    Args:
        size: output edge length.
        kind: ``"brain2d"`` or ``"brain3d"``.
        slab_half: brain2d: slices kept on each side of the ventricle level.
        radius: vessel radius in output pixels.
        softness: roll-off width in output pixels, inside the radius.

    Returns:
        Read-only float32 density in [0, 1] on the grid of ``template_grid(size, kind, slab_half)``.
    """
    grid: TemplateGrid = template_grid(size, kind, slab_half)
    t1, wm = grid.t1, grid.wm
    nx, ny, nz = t1.shape
    brain = _brain_mask(t1)
    # mid-sagittal plane: RAS x = 0
    xm = float(-grid.affine[0, 3] / grid.affine[0, 0])
    x_lo, x_hi = int(np.floor(xm)), int(np.ceil(xm))
    sagittal = brain[x_lo] | brain[x_hi]  # (y, z)
    edt = ndi.distance_transform_edt(sagittal)
    inset = radius + 0.5
    x = np.arange(nx, dtype=np.float64) - xm
    band = np.sqrt(x[:, None, None] ** 2 + (edt[None] - inset) ** 2)
    sinus = _profile(band, radius, softness) * sagittal[None]
    vc = grid.ventricle_centre
    if kind == "brain3d":
        sinus[:, :, : int(np.ceil(vc[2]))] = 0.0  # the sinus runs over the top of the brain

    # choroid plexus: the most posterior (largest y) ventricle CSF voxel per hemisphere
    csf = brain & (t1 < _CSF_LEVEL) & (wm < _CSF_WM_MAX)
    ix, iy, iz = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    reach = grid.ventricle_sigma
    if kind == "brain2d":
        near = (ix - vc[0]) ** 2 + (iy - vc[1]) ** 2 < reach**2
        csf = csf & near & (iz == int(round(grid.slice_z)))
    else:
        near = (ix - vc[0]) ** 2 + (iy - vc[1]) ** 2 + (iz - vc[2]) ** 2 < reach**2
        csf = csf & near
    plexus = np.zeros(t1.shape, np.float64)
    for side in (ix < xm, ix > xm):
        pts = np.argwhere(csf & side)
        if len(pts) == 0:
            continue
        p = pts[np.lexsort((pts[:, 0], pts[:, 2], pts[:, 1]))[-1]].astype(np.float64)
        d2 = (ix - p[0]) ** 2 + (iy - p[1]) ** 2
        if kind == "brain3d":
            d2 = d2 + (iz - p[2]) ** 2
        plexus = np.maximum(plexus, _profile(np.sqrt(d2), radius, softness))
    density = np.maximum(sinus, plexus).astype(np.float32)
    density.setflags(write=False)
    return density


def subject_vessel_density(
    grid: TemplateGrid, anatomy: AnatomyParams, cfg: PhantomConfig, radius: float, softness: float
) -> np.ndarray:
    """The vessel density warped into one subject (the same warp as its T1 and white matter).

    Args:
        grid: the subject's template grid (``phantoms.brain_cohort.subject_grid(cfg)``).
        anatomy: the subject's anatomical factors.
        cfg: the brain config the grid and anatomy belong to.
        radius: vessel radius in output pixels.
        softness: roll-off width in output pixels.

    Returns:
        float32 density ``[x, y(, z)]`` in [0, 1]; its support is the subject's vessel mask.
    """
    slab_half = (grid.t1.shape[2] - 1) // 2 if cfg.kind == "brain2d" else 0
    density = grid_vessel_density(cfg.size, cfg.kind, slab_half, float(radius), float(softness))
    vessel_grid = dataclasses.replace(grid, t1=density, wm=density)
    _, warped, _ = warp_anatomy(vessel_grid, anatomy, cfg)
    return np.clip(warped, 0.0, 1.0)
