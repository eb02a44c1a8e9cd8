"""Files of a contrast cohort: per-subject images, masks and ground-truth maps, and the lesion table.

Layout under ``out_dir`` (2D: 16-bit PNG images and 8-bit PNG masks as in brain2d; dce3d: NIfTI;
maps are always float32 NIfTI, written by `phantoms.image_files.write_nifti`)::

    images/<id>_pre.png      images/<id>_post_t<k>.png   (k = 0, 1, ... per time point)
                             images/<id>_t2.png           (dce2d_t2 instead of post_t<k>)
    masks/<id>_lesions.png   (lesion instance ids 1..n, 0 elsewhere)
    masks/<id>_vessels.png   (0/1 vessel support)
    maps/<id>_enhancement_t<k>.nii.gz                     (post_clean(t_k) - pre_clean)
    maps/<id>_difference.nii.gz                           (dce2d_t2: t2_clean - pre_clean)
    datalist.json   factors.csv (one row per lesion)   subjects.csv (one row per subject)
    phantom_config.json
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cohort_writer import write_factors_csv
from .contrast_config import ContrastPhantomConfig
from .image_files import write_nifti, write_png_image, write_png_mask

if TYPE_CHECKING:
    from .contrast_cohort import RenderedContrastSubject

__all__ = ["lesion_columns", "lesion_rows", "write_contrast_subject", "write_lesion_factors"]


def lesion_columns(cfg: ContrastPhantomConfig) -> list[str]:
    """Columns of ``factors.csv`` (``area_px`` in 2D, ``volume_vox`` in 3D)."""
    axes = "xyz"[: cfg.spatial_dims]
    size_key = "area_px" if cfg.spatial_dims == 2 else "volume_vox"
    return (
        ["id", "lesion_id", "split", "site"]
        + [f"centre_{a}" for a in axes]
        + ["radius", "enhancing", "kinetics", "peak_enhancement", size_key, "t1_contrast", "t2_contrast"]
    )


def lesion_rows(
    cfg: ContrastPhantomConfig, rendered: RenderedContrastSubject, split: str
) -> list[dict[str, Any]]:
    """One ``factors.csv`` row per lesion of a rendered subject.

    Args:
        cfg: the cohort config.
        rendered: the subject (``factors`` supplies id and site).
        split: the subject's split.

    Returns:
        Rows keyed by `lesion_columns`: subject id, lesion id (its value in the instance mask),
        split, site, centre (pixels, ``[x, y(, z)]``), radius (pixels), enhancing (0/1),
        kinetics (``"none"`` when not enhancing), peak enhancement, pixel count of its mask and
        its T1/T2 contrasts.
    """
    columns = lesion_columns(cfg)
    rows = []
    for j, les in enumerate(rendered.lesions):
        values = [rendered.factors["id"], j + 1, split, rendered.factors["site"]]
        values += [float(c) for c in les.lesion.centre]
        values += [
            les.lesion.radius,
            int(les.enhancing),
            les.kinetics,
            les.peak_enhancement,
            int((rendered.lesion_mask == j + 1).sum()),
            les.lesion.contrast,
            les.t2_contrast,
        ]
        rows.append(dict(zip(columns, values, strict=True)))
    return rows


def write_contrast_subject(
    out: Path, cfg: ContrastPhantomConfig, sid: str, rendered: RenderedContrastSubject, affine: np.ndarray
) -> dict[str, Any]:
    """Write one subject's images, masks and maps (``images/``, ``masks/``, ``maps/`` must exist).

    Args:
        out: cohort folder.
        cfg: the cohort config (kind, dimensions).
        sid: subject id.
        rendered: the rendered subject.
        affine: voxel-to-RAS affine of the grid (of the slice in 2D).

    Returns:
        The record's paths, relative to ``out``: ``source``, ``target``, ``targets``, ``mask``,
        ``vessels``, ``difference`` and, for the DCE kinds, ``enhancement`` and ``enhancements``.
    """
    two_d = cfg.spatial_dims == 2
    ext = ".png" if two_d else ".nii.gz"

    def image(rel: str, arr: np.ndarray) -> str:
        if two_d:
            write_png_image(out / rel, arr)
        else:
            write_nifti(out / rel, arr, affine)
        return rel

    def mask(rel: str, arr: np.ndarray) -> str:
        if two_d:
            write_png_mask(out / rel, arr)
        else:
            write_nifti(out / rel, arr.astype(np.uint8), affine)
        return rel

    if cfg.kind == "dce2d_t2":
        names = [f"images/{sid}_t2{ext}"]
        map_names = [f"maps/{sid}_difference.nii.gz"]
    else:
        names = [f"images/{sid}_post_t{k}{ext}" for k in range(len(rendered.targets))]
        map_names = [f"maps/{sid}_enhancement_t{k}.nii.gz" for k in range(len(rendered.targets))]
    source = image(f"images/{sid}_pre{ext}", rendered.pre)
    targets = [image(rel, arr) for rel, arr in zip(names, rendered.targets, strict=True)]
    for rel, arr in zip(map_names, rendered.maps, strict=True):
        write_nifti(out / rel, arr, affine)
    paths: dict[str, Any] = {
        "source": source,
        "target": targets[0],
        "targets": targets,
        "mask": mask(f"masks/{sid}_lesions{ext}", rendered.lesion_mask),
        "vessels": mask(f"masks/{sid}_vessels{ext}", rendered.vessel_mask),
        "difference": map_names[0],
    }
    if cfg.kind != "dce2d_t2":
        paths["enhancement"] = map_names[0]
        paths["enhancements"] = map_names
    return paths


def write_lesion_factors(path: Path, cfg: ContrastPhantomConfig, rows: list[dict[str, Any]]) -> None:
    """Write ``factors.csv``: one row per lesion (a header alone when the cohort has none).

    Args:
        path: destination.
        cfg: the cohort config (sets the columns of an empty table).
        rows: `lesion_rows` of every subject, in subject order.
    """
    if rows:
        write_factors_csv(path, rows)
        return
    with path.open("w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerow(lesion_columns(cfg))
