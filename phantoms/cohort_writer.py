"""Cohort files: image and mask files, ``datalist.json``, ``factors.csv``, ``lesions.csv``, ``phantom_config.json``.

Layout under ``out_dir``::

    images/<id>.png | <id>.nii.gz | <id>.dcm | <id>/slice_000.dcm ...   (brain3d + dicom: a series folder)
    masks/<id>.png | <id>.nii.gz                                         (PNG for 2D png/dicom, else NIfTI)
    datalist.json   factors.csv   lesions.csv   phantom_config.json

A datalist record holds ``id``, ``image``, ``label`` (the image class: 1 iff it holds a lesion),
``mask`` (uint8 INSTANCE mask: 0 background, ``1..k`` the lesions in placement order; with one
lesion the 0/1 mask), ``boxes`` (one box per instance, ordered by id: ``[x0, y0(, z0), x1, y1(, z1)]``
in array index coordinates, upper bounds exclusive — MONAI's corner mode ``xyxy``/``xyzxyz``, so
``monai.apps.detection`` transforms read it with ``box_keys="boxes"`` once ``EnsureTyped`` made it a
tensor, as MONAI's detection tutorials do), ``box_labels`` (one class per box, all 0 = "lesion", for
``label_keys="box_labels"``) and ``attributes``. MONAI's detection datalists call ``boxes`` and
``box_labels`` ``box`` and ``label``; here ``label`` already is the image class.

``factors.csv`` holds one row per image; its ``lesion_*`` columns describe the FIRST lesion
(instance 1) and ``lesion_count`` counts them all. ``lesions.csv`` holds one row per lesion:
``id``, ``instance``, the centre per axis (``x``, ``y``(, ``z``), pixels), ``radius``,
``contrast``, ``area_px`` (2D) or ``volume_vox`` (3D) and its box (``box_x0`` ... ``box_x1`` ...).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .image_files import (
    DicomSubject,
    write_dicom_series,
    write_dicom_slice,
    write_nifti,
    write_png_image,
    write_png_mask,
)
from .lesions import box_columns
from .phantom_config import SPLITS, PhantomConfig
from .subjects import Subject

__all__ = [
    "file_names",
    "lesion_csv_columns",
    "write_datalist",
    "write_factors_csv",
    "write_lesions_csv",
    "write_phantom_config",
    "write_subject_files",
]


def file_names(cfg: PhantomConfig, sid: str) -> tuple[str, str]:
    """Relative image and mask paths of subject ``sid`` (POSIX separators)."""
    fmt, two_d = cfg.image_format, cfg.kind == "brain2d"
    image = {
        "png": f"images/{sid}.png",
        "nifti": f"images/{sid}.nii.gz",
        "dicom": f"images/{sid}.dcm" if two_d else f"images/{sid}",
    }[fmt]
    mask = f"masks/{sid}.png" if two_d and fmt in ("png", "dicom") else f"masks/{sid}.nii.gz"
    return image, mask


def write_subject_files(
    out_dir: Path,
    cfg: PhantomConfig,
    subject: Subject,
    image: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
) -> tuple[str, str]:
    """Write one subject's image and mask.

    Args:
        out_dir: cohort folder (``images/`` and ``masks/`` must exist).
        cfg: the cohort config (format, kind, seed).
        subject: the subject (id and DICOM metadata).
        image: float ``[x, y(, z)]`` in [0, 1].
        mask: uint8 ``[x, y(, z)]`` instance mask (0 background, ``1..k`` the lesions).
        affine: voxel-to-RAS affine of the image grid.

    Returns:
        The relative image and mask paths.
    """
    image_rel, mask_rel = file_names(cfg, subject.id)
    image_path, mask_path = out_dir / image_rel, out_dir / mask_rel
    if cfg.image_format == "png":
        write_png_image(image_path, image)
    elif cfg.image_format == "nifti":
        write_nifti(image_path, image, affine)
    else:
        dicom = DicomSubject(
            patient_id=subject.id,
            sex=subject.sex,
            age_years=subject.age,
            site=subject.site.name,
            scanner=subject.site.scanner,
            uid_entropy=("medglass-phantom", cfg.kind, str(cfg.size), str(cfg.seed), subject.id),
        )
        if cfg.kind == "brain2d":
            write_dicom_slice(image_path, image, affine, dicom)
        else:
            write_dicom_series(image_path, image, affine, dicom)
    if mask_rel.endswith(".png"):
        write_png_mask(mask_path, mask)
    else:
        write_nifti(mask_path, mask.astype(np.uint8), affine)
    return image_rel, mask_rel


def write_reference_files(
    out_dir: Path, cfg: PhantomConfig, sid: str, clean: np.ndarray, body: np.ndarray, affine: np.ndarray
) -> tuple[str, str]:
    """Write one subject's clean image and body mask (``clean/`` and ``body/``, the image's format).

    The clean image is what the acquisition would give without noise and bias field (the site's
    contrast and the marker kept): the target a reconstruction that "corrects defects" is scored
    against. DICOM cohorts get NIfTI references.

    Returns:
        The relative clean-image and body-mask paths.
    """
    image_rel, mask_rel = file_names(cfg, sid)
    if cfg.image_format == "dicom":
        image_rel = f"images/{sid}.nii.gz"
        mask_rel = f"masks/{sid}.nii.gz"
    clean_rel = "clean/" + image_rel.split("/", 1)[1]
    body_rel = "body/" + mask_rel.split("/", 1)[1]
    (out_dir / clean_rel).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / body_rel).parent.mkdir(parents=True, exist_ok=True)
    if clean_rel.endswith(".png"):
        write_png_image(out_dir / clean_rel, clean)
        write_png_mask(out_dir / body_rel, body)
    else:
        write_nifti(out_dir / clean_rel, clean, affine)
        write_nifti(out_dir / body_rel, body.astype(np.uint8), affine)
    return clean_rel, body_rel


def write_datalist(
    path: Path, cfg: PhantomConfig, records: list[dict[str, Any]], splits: list[str], description: str
) -> None:
    """Write the MONAI datalist (``training`` / ``validation`` / ``test`` lists in index order).

    Args:
        path: destination ``datalist.json``.
        cfg: the cohort config (stored under ``phantom_config``).
        records: one datalist record per subject, in index order.
        splits: each subject's split name.
        description: the datalist's ``description``.
    """
    data: dict[str, Any] = {name: [] for name in SPLITS}
    for record, split in zip(records, splits, strict=True):
        data[split].append(record)
    data["description"] = description
    data["phantom_config"] = cfg.to_dict()
    path.write_text(json.dumps(data, indent=1) + "\n")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else format(value, ".6g")
    return str(value)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])


def write_factors_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write one row per subject; columns are the keys of the first row, in order.

    Floats are written with 6 significant digits; NaN as ``nan``.
    """
    if not rows:
        raise ValueError("write_factors_csv needs at least one row, got none")
    _write_csv(path, list(rows[0]), rows)


def lesion_csv_columns(ndim: int) -> list[str]:
    """The columns of ``lesions.csv`` for 2D (``ndim=2``) or 3D cohorts."""
    axes = list("xyz"[:ndim])
    size = "area_px" if ndim == 2 else "volume_vox"
    return ["id", "instance", *axes, "radius", "contrast", size, *[f"box_{c}" for c in box_columns(ndim)]]


def write_lesions_csv(path: Path, rows: list[dict[str, Any]], ndim: int) -> None:
    """Write one row per lesion (columns `lesion_csv_columns`; a header alone when there is none).

    Args:
        path: destination ``lesions.csv``.
        rows: lesion rows in subject order, then instance order.
        ndim: 2 or 3.

    Raises:
        ValueError: a row lacks one of the columns.
    """
    columns = lesion_csv_columns(ndim)
    for row in rows:
        missing = [c for c in columns if c not in row]
        if missing:
            raise ValueError(f"write_lesions_csv: row {row.get('id')!r} lacks columns {missing}")
    _write_csv(path, columns, rows)


def write_phantom_config(path: Path, cfg: PhantomConfig) -> None:
    """Write the config as JSON (``PhantomConfig.from_dict`` reads it back)."""
    path.write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
