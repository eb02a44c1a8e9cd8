"""MNI152 anatomy: template loading, one-off resampling to the output grid, per-subject warps.

The anatomy is nilearn's packaged ICBM152 2009a template (T1, grey- and white-matter
probability maps), read by path, never through a fetcher. It is loaded once, cropped to the
brain's bounding box padded to a cube, anti-aliased and resampled once per output size
(brain2d: only a thin axial slab at the lateral ventricles). Output arrays are indexed
``[x, y(, z)]`` in LPS order (x towards the patient's left, y posterior, z superior), so a
PNG written as ``Image.fromarray(arr.T)`` and a DICOM slice with ImageOrientationPatient
``[1, 0, 0, 0, 1, 0]`` both display radiologically (anterior up, patient's left on the right).

Each subject is a smooth warp of the template: global head scale (sex), radial expansion
around the lateral ventricles (age), small rotation and translation, and a low-frequency
random displacement field, applied to T1 and white matter together with
``scipy.ndimage.map_coordinates`` (order 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .phantom_config import PhantomConfig
from .smooth_fields import mode_frequencies, n_modes, smooth_field

__all__ = [
    "AnatomyParams",
    "TemplateGrid",
    "load_mni_template",
    "sample_anatomy",
    "template_grid",
    "template_paths",
    "warp_anatomy",
]

_TEMPLATE_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
# a point between the lateral ventricles (MNI (0, -15, +15) mm) in template voxels; the
# ventricles are the CSF-like components of the template within _VENTRICLE_RADIUS_MM of it
_VENTRICLE_SEED_VOX = np.array([98.0, 119.0, 87.0])
_VENTRICLE_RADIUS_MM = 25.0
_CUBE_MARGIN = 0.08  # fraction of the brain's longest extent added on each side of the cube
_DEFORM_FREQS = 3  # cosine frequencies per axis for the smooth displacement


def template_paths() -> dict[str, Path]:
    """Paths of the T1, grey- and white-matter maps shipped inside nilearn."""
    import nilearn

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    return {k: data / _TEMPLATE_FILE.format(k) for k in ("t1", "gm", "wm")}


@lru_cache(maxsize=1)
def load_mni_template() -> dict[str, np.ndarray]:
    """Load the 1 mm MNI152 maps once.

    Returns:
        ``{"t1", "gm", "wm"}``: float32 arrays in [0, 1] (RAS voxel order, 197x233x189),
        ``"ventricles"``: bool mask of the lateral ventricles, ``"affine"``: the 4x4 voxel-to-RAS matrix.

    Raises:
        FileNotFoundError: a template file is missing (named in the message).
    """
    import nibabel as nib

    out: dict[str, np.ndarray] = {}
    for key, path in template_paths().items():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: MNI152 template file missing (it ships with nilearn's package data; "
                "reinstall nilearn)"
            )
        img = nib.load(str(path))
        out[key] = np.asarray(img.dataobj, dtype=np.float32) / 255.0
        out["affine"] = np.asarray(img.affine, dtype=np.float64)
    brain = ndi.binary_fill_holes(out["t1"] > 0.02)
    csf = brain & (out["gm"] + out["wm"] < 0.3) & (out["t1"] < 0.45)
    labels, n = ndi.label(csf)
    sizes = ndi.sum_labels(csf, labels, np.arange(1, n + 1))
    centres = np.array(ndi.center_of_mass(csf, labels, np.arange(1, n + 1)))
    near = np.linalg.norm(centres - _VENTRICLE_SEED_VOX, axis=1) < _VENTRICLE_RADIUS_MM
    keep = np.flatnonzero(near & (sizes > 1000)) + 1
    out["ventricles"] = np.isin(labels, keep)
    out["brain"] = brain
    return out


@dataclass(frozen=True)
class TemplateGrid:
    """The template resampled to the output grid (shared by every subject of a config).

    Attributes:
        t1: T1 intensities ``[x, y, z]`` (brain2d: an axial slab), white matter at 1.0.
        wm: white-matter probability, same grid.
        spacing_mm: isotropic output voxel size.
        affine: 4x4 voxel-to-RAS (mm) matrix of the full output grid (brain2d: of the slice level).
        ventricle_centre: centre of the lateral ventricles in grid coordinates (``[x, y, z]``).
        ventricle_sigma: width (px) of the ventricle expansion.
        slice_z: brain2d: z coordinate within the slab of the ventricle level; brain3d: 0.
    """

    t1: np.ndarray
    wm: np.ndarray
    spacing_mm: float
    affine: np.ndarray
    ventricle_centre: np.ndarray
    ventricle_sigma: float
    slice_z: float


@lru_cache(maxsize=8)
def template_grid(size: int, kind: str, slab_half: int = 0) -> TemplateGrid:
    """Resample the template to a ``size``-edge cube (brain2d: a slab of ``2 * slab_half + 1`` slices).

    Args:
        size: output edge length.
        kind: ``"brain2d"`` or ``"brain3d"``.
        slab_half: brain2d: slices kept on each side of the ventricle level.

    Returns:
        The cached `TemplateGrid`.
    """
    tpl = load_mni_template()
    idx = np.argwhere(tpl["brain"])
    lo, hi = idx.min(0).astype(np.float64), idx.max(0).astype(np.float64)
    centre = (lo + hi) / 2.0
    edge = float((hi - lo + 1).max()) * (1.0 + 2.0 * _CUBE_MARGIN)
    step = edge / size
    # grid index -> template voxel: x and y flipped (RAS -> LPS), z kept
    diag = np.array([-step, -step, step])
    start = centre + np.array([edge / 2, edge / 2, -edge / 2]) + diag / 2.0  # voxel of grid index 0

    def to_grid(vox: np.ndarray) -> np.ndarray:
        return (vox - start) / diag

    vent = tpl["ventricles"]
    vent_idx = np.argwhere(vent).astype(np.float64)
    if kind == "brain2d":
        area = vent.sum(axis=(0, 1))
        level_vox = float(np.argmax(area))
        k_level = int(round(to_grid(np.array([0.0, 0.0, level_vox]))[2]))
        k0 = k_level - slab_half
        depth = 2 * slab_half + 1
        in_slice = vent_idx[np.abs(vent_idx[:, 2] - level_vox) < step / 2 + 0.5]
        vent_idx = in_slice if len(in_slice) else vent_idx
    else:
        k0, depth = 0, size
    offset = start + diag * np.array([0.0, 0.0, k0])
    sigma_aa = 0.4 * step if step > 1 else 0.0
    arrays = []
    for key in ("t1", "wm"):
        src = ndi.gaussian_filter(tpl[key], sigma_aa) if sigma_aa else tpl[key]
        arrays.append(
            ndi.affine_transform(
                src, diag, offset=offset, output_shape=(size, size, depth), order=1, cval=0.0
            )
        )
    t1 = (arrays[0] / float(np.median(tpl["t1"][tpl["wm"] > 0.9]))).astype(np.float32)
    wm = arrays[1].astype(np.float32)
    vc = to_grid(vent_idx.mean(0)) - np.array([0.0, 0.0, k0])
    spread = np.sqrt(((to_grid(vent_idx)[:, :2] - vc[:2]) ** 2).sum(1).mean())
    affine = np.eye(4)
    affine[:3, :3] = tpl["affine"][:3, :3] @ np.diag(diag)
    affine[:3, 3] = (
        tpl["affine"][:3, :3] @ (start + diag * np.array([0, 0, k0 + slab_half])) + tpl["affine"][:3, 3]
    )
    for a in (t1, wm, vc, affine):
        a.setflags(write=False)
    return TemplateGrid(
        t1=t1,
        wm=wm,
        spacing_mm=step,
        affine=affine,
        ventricle_centre=vc,
        ventricle_sigma=float(1.8 * spread),
        slice_z=float(slab_half) if kind == "brain2d" else 0.0,
    )


@dataclass(frozen=True)
class AnatomyParams:
    """Sampled anatomical factors of one subject (output pixels unless named otherwise)."""

    head_scale: float
    ventricle_strength: float
    rotation_deg: tuple[float, ...]
    translation_px: tuple[float, ...]
    deform_coeffs: np.ndarray
    slice_offset_px: float

    @property
    def ventricle_scale(self) -> float:
        """Linear magnification at the ventricle centre, ``1 / (1 - strength)``."""
        return 1.0 / (1.0 - self.ventricle_strength)


def sample_anatomy(rng: np.random.Generator, cfg: PhantomConfig, sex: str, age: float) -> AnatomyParams:
    """Draw one subject's anatomical factors.

    Args:
        rng: the subject's anatomy stream.
        cfg: the cohort config.
        sex: ``"F"`` or ``"M"`` (sets the base head scale).
        age: years (drives the ventricle expansion).

    Returns:
        The sampled `AnatomyParams`.
    """
    nd = cfg.spatial_dims
    base = cfg.female_head_scale if sex == "F" else cfg.male_head_scale
    head_scale = base * (1.0 + cfg.head_scale_jitter * float(rng.standard_normal()))
    strength = cfg.ventricle_age_slope * (age - cfg.age_range[0]) + cfg.ventricle_jitter * float(
        rng.standard_normal()
    )
    strength = float(np.clip(strength, 0.0, 0.75))
    n_rot = 1 if nd == 2 else 3
    rotation = tuple(float(v) for v in rng.uniform(-cfg.rotation_max_deg, cfg.rotation_max_deg, n_rot))
    t_max = cfg.translation_max * cfg.scale
    translation = tuple(float(v) for v in rng.uniform(-t_max, t_max, nd))
    freq_norm = np.linalg.norm(mode_frequencies(nd, _DEFORM_FREQS), axis=1)
    sd = cfg.deformation_magnitude * cfg.scale / freq_norm
    coeffs = (rng.standard_normal((nd, n_modes(nd, _DEFORM_FREQS))) * sd).astype(np.float32)
    offset = float(rng.uniform(-1.0, 1.0)) * cfg.slice_offset_max * cfg.scale if nd == 2 else 0.0
    return AnatomyParams(head_scale, strength, rotation, translation, coeffs, offset)


def _rotation_matrix(rotation_deg: tuple[float, ...]) -> np.ndarray:
    r = [math.radians(a) for a in rotation_deg]
    if len(r) == 1:
        c, s = math.cos(r[0]), math.sin(r[0])
        return np.array([[c, -s], [s, c]])
    cx, sx, cy, sy, cz, sz = (f(a) for a in r for f in (math.cos, math.sin))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@lru_cache(maxsize=4)
def _identity_grid(size: int, ndim: int) -> np.ndarray:
    centre = (size - 1) / 2.0
    axes = [np.arange(size, dtype=np.float32) - centre] * ndim
    grid = np.stack(np.meshgrid(*axes, indexing="ij"))
    grid.setflags(write=False)
    return grid


def warp_anatomy(
    grid: TemplateGrid, params: AnatomyParams, cfg: PhantomConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Warp the template into one subject.

    The output pixel ``p`` samples the template at
    ``v + (u - v) * (1 - a * exp(-|u - v|^2 / (2 sigma^2)))`` with
    ``u = R^T (p - c - t) / head_scale + c + d(p)``: ``R`` the rotation, ``t`` the translation,
    ``d`` the smooth displacement, ``v`` the ventricle centre and ``a`` the ventricle strength
    (a one-to-one radial expansion for ``a < 1``, magnifying the ventricles by ``1 / (1 - a)``).

    Args:
        grid: the resampled template.
        params: the subject's factors.
        cfg: the cohort config (size, tissue intensity).

    Returns:
        ``(t1, wm, stats)``: T1 scaled so white matter is ``cfg.tissue_intensity``, white-matter
        probability (both ``[x, y(, z)]`` float32), and ``{"deform_rms_px", "deform_max_px"}``.
    """
    nd, size = cfg.spatial_dims, cfg.size
    centre = (size - 1) / 2.0
    p = _identity_grid(size, nd)  # centred output coordinates, (nd, *spatial)
    disp = np.stack([smooth_field(c, size, nd, _DEFORM_FREQS) for c in params.deform_coeffs])
    rot_t = _rotation_matrix(params.rotation_deg).T / params.head_scale
    shifted = p - np.asarray(params.translation_px, np.float32).reshape((nd,) + (1,) * nd)
    u = np.tensordot(rot_t.astype(np.float32), shifted, axes=(1, 0)) + centre + disp
    v = grid.ventricle_centre[:nd].astype(np.float32).reshape((nd,) + (1,) * nd)
    r = u - v
    a = params.ventricle_strength
    if a > 0:
        w = np.exp(-(r * r).sum(0) / np.float32(2.0 * grid.ventricle_sigma**2))
        u = v + r * (1.0 - np.float32(a) * w)
    if nd == 2:
        z = np.full((1, size, size), grid.slice_z + params.slice_offset_px, np.float32)
        u = np.concatenate([u, z])
    t1 = ndi.map_coordinates(grid.t1, u, order=1, cval=0.0, prefilter=False)
    wm = ndi.map_coordinates(grid.wm, u, order=1, cval=0.0, prefilter=False)
    mag = np.sqrt((disp * disp).sum(0))
    stats = {"deform_rms_px": float(np.sqrt((mag * mag).mean())), "deform_max_px": float(mag.max())}
    return (t1 * np.float32(cfg.tissue_intensity)).astype(np.float32), wm.astype(np.float32), stats
