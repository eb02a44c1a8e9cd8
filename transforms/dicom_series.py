"""Turn DICOM files and series into channel-first arrays with their affine.

Layout follows MONAI's readers: channel first, spatial axes ``(x, y[, z])`` where x runs
along a row (DICOM column index), y down the columns (row index), z across slices or
frames; the affine maps voxel indices to RAS millimetres (``PydicomReader``'s default).
A series is ordered by slice position along the slice normal, not by InstanceNumber,
which scanners do not always assign in spatial order.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from transforms.dicom_reader import DicomImage, read_dicom_file
from transforms.read_errors import ImageReadError

__all__ = ["dicom_affine", "to_channel_first", "read_dicom", "read_dicom_series", "series_sort_key"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _floats(value: object, n: int) -> np.ndarray | None:
    try:
        out = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if out.size == n and np.all(np.isfinite(out)) else None


def _orientation(ds: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row direction, column direction and slice normal (LPS) of a dataset."""
    iop = _floats(ds.get("ImageOrientationPatient"), 6)
    if iop is None or np.linalg.norm(iop[:3]) == 0 or np.linalg.norm(iop[3:]) == 0:
        iop = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    return row, col, np.cross(row, col)


def _pixel_spacing(ds: Dataset) -> tuple[float, float]:
    """(row spacing, column spacing) in mm; 1 mm when the header has none."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _floats(ds.get(keyword), 2)
        if spacing is not None and np.all(spacing > 0):
            return float(spacing[0]), float(spacing[1])
    return 1.0, 1.0


def series_sort_key(ds: Dataset) -> float | None:
    """Position of a slice along its normal (mm), or None without ImagePositionPatient."""
    ipp = _floats(ds.get("ImagePositionPatient"), 3)
    if ipp is None:
        return None
    return float(np.dot(ipp, _orientation(ds)[2]))


def dicom_affine(ds: Dataset, slice_step: np.ndarray | None = None) -> np.ndarray:
    """The 4×4 voxel-to-RAS affine of a DICOM image in ``(x, y, z)`` index order.

    Args:
        ds: the (first) slice's dataset.
        slice_step: LPS vector from one slice to the next (series); default: the normal
            times SpacingBetweenSlices, SliceThickness or 1 mm.

    Returns:
        A float64 4×4 matrix.
    """
    row, col, normal = _orientation(ds)
    row_spacing, col_spacing = _pixel_spacing(ds)
    if slice_step is None:
        thickness = 1.0
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = _floats([ds.get(keyword)], 1) if ds.get(keyword) is not None else None
            if value is not None and value[0] > 0:
                thickness = float(value[0])
                break
        slice_step = normal * thickness
    origin = _floats(ds.get("ImagePositionPatient"), 3)
    affine = np.eye(4)
    affine[:3, 0] = row * col_spacing  # x index moves along a row, one column at a time
    affine[:3, 1] = col * row_spacing  # y index moves down a column, one row at a time
    affine[:3, 2] = slice_step
    affine[:3, 3] = origin if origin is not None else 0.0
    return _LPS_TO_RAS @ affine


def to_channel_first(pixels: np.ndarray) -> np.ndarray:
    """``(frames, rows, cols[, 3])`` → ``(C, x, y[, z])``; a single frame gives a 2D image."""
    if pixels.ndim == 4:
        out = pixels.transpose(3, 2, 1, 0)
    else:
        out = pixels.transpose(2, 1, 0)[None]
    if out.shape[-1] == 1:
        out = out[..., 0]
    return np.ascontiguousarray(out)


def _meta(image: DicomImage, affine: np.ndarray, files: list[str]) -> dict:
    ds = image.dataset
    syntax = ds.file_meta.TransferSyntaxUID
    return {
        "affine": affine,
        "filename_or_obj": files[0] if len(files) == 1 else str(Path(files[0]).parent),
        "source_files": files,
        "modality": str(ds.get("Modality", "")),
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "")),
        "transfer_syntax": getattr(syntax, "name", str(syntax)),
        "decoder": image.decoder,
    }


def read_dicom(path: str | PathLike) -> tuple[np.ndarray, dict]:
    """Read one DICOM file (single- or multi-frame) as a channel-first array.

    Args:
        path: the file.

    Returns:
        ``(array, meta)``: float32 ``(C, x, y[, frames])`` and a metadata dict with
        ``affine`` and no patient identifiers.

    Raises:
        ImageReadError: the file cannot be read; the message names it and the reason.
    """
    image = read_dicom_file(path)
    array = to_channel_first(image.pixels)
    return array, _meta(image, dicom_affine(image.dataset), [image.path])


def read_dicom_series(paths: Sequence[str | PathLike] | str | PathLike) -> tuple[np.ndarray, dict]:
    """Read single-frame DICOM slices (a list of files or a folder) as one volume.

    Slices are ordered by their position along the slice normal (InstanceNumber, then
    file name, when positions are missing); every slice must have the same size.

    Args:
        paths: a folder holding the slices, or the slice files.

    Returns:
        ``(array, meta)``: float32 ``(C, x, y, z)`` and metadata with the series affine.

    Raises:
        ImageReadError: an unreadable slice (named), mixed sizes, slices at the same
            position, or a folder without DICOM images.
    """
    if isinstance(paths, (str, PathLike)):
        folder = Path(paths)
        files = sorted(str(p) for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ImageReadError(folder, "folder holds no files (expected the slices of a DICOM series)")
        where: str | PathLike = folder
    else:
        files = [str(p) for p in paths]
        if not files:
            raise ValueError("paths must name at least one DICOM file, got an empty list")
        where = Path(files[0]).parent
    images = [read_dicom_file(f) for f in files]
    if len(images) == 1:
        return read_dicom(files[0])
    shapes = {im.pixels.shape for im in images}
    if len(shapes) > 1 or images[0].pixels.shape[0] != 1:
        raise ImageReadError(
            where, f"slices differ in size or are multi-frame ({sorted(shapes)}); not one series"
        )
    positions = [series_sort_key(im.dataset) for im in images]
    if all(p is not None for p in positions):
        order = np.argsort(positions, kind="stable")
        sorted_pos = np.asarray(positions)[order]
        gaps = np.diff(sorted_pos)
        if np.any(np.abs(gaps) < 1e-4):
            raise ImageReadError(where, "two or more slices share the same position; not one series")
    else:
        numbers = [int(im.dataset.get("InstanceNumber", 0) or 0) for im in images]
        order = np.lexsort((np.asarray(files), np.asarray(numbers)))
    images = [images[i] for i in order]
    volume = np.concatenate([im.pixels for im in images], axis=0)
    first, last = images[0].dataset, images[-1].dataset
    ipp0, ipp1 = _floats(first.get("ImagePositionPatient"), 3), _floats(last.get("ImagePositionPatient"), 3)
    step = (ipp1 - ipp0) / (len(images) - 1) if ipp0 is not None and ipp1 is not None else None
    return to_channel_first(volume), _meta(images[0], dicom_affine(first, step), [im.path for im in images])
