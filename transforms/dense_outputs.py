"""Segmentation and detection outputs that a hospital tool opens.

Three kinds of file, each written atomically (a temporary name in the same folder, then one
``os.replace``), so a crash or a refused input never leaves a half-written file behind:

* a NIfTI label image (nibabel) with exactly the input image's affine and shape;
* a DICOM Segmentation (highdicom) that references the source series and each source
  instance, with medglass named as the segmenting algorithm;
* detection boxes as JSON in world (RAS) millimetres.

Arrays follow the project's layout (:mod:`transforms.dicom_series`): spatial axes
``(x, y[, z])`` with x along a DICOM row (column index), y down the columns (row index) and
z across slices in the order :func:`~transforms.image_loading.load_image` stacks them
(position along the slice normal); a leading channel axis of size 1 is accepted. Boxes use
MONAI's corner mode ``[x0, y0(, z0), x1, y1(, z1)]`` in index units, and MONAI's mapping to
world coordinates (``monai.apps.detection.transforms.box_ops.apply_affine_to_boxes``: a
corner's index coordinates go through the affine as they are, index ``i`` being voxel
``i``'s centre), so the JSON maps back with MONAI's ``AffineBoxToImageCoordinated``.

Written by hand: the checks (shapes, label values, box extent) and the slice-to-instance
mapping; nibabel, highdicom and MONAI do the encoding and the box arithmetic.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from transforms.dicom_series import series_sort_key

__all__ = [
    "boxes_to_world",
    "check_boxes_in_extent",
    "source_frame_shape",
    "write_boxes_json",
    "write_dicom_seg",
    "write_nifti_mask",
]

_EXTENT_TOLERANCE = 1e-3  # index units; float boxes clipped to the image may overshoot by rounding


@contextlib.contextmanager
def _atomic_target(path: str | PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffixes) that replaces it on success.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the suffixes stay last so writers that pick a format by extension (nibabel) still do
    tmp = out.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{out.name}"
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _as_numpy(array: Any, name: str) -> np.ndarray:
    if hasattr(array, "detach"):  # torch.Tensor / MetaTensor
        array = array.detach().cpu().numpy()
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be array-like, got {type(array).__name__}") from err


def _drop_channel(mask: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """Remove a leading channel axis of size 1 when the mask has one more axis than the image."""
    if mask.ndim == spatial_ndim + 1 and mask.shape[0] == 1:
        return mask[0]
    return mask


def _spatial_shape(shape: Sequence[int], spatial_ndim: int | None = None) -> tuple[int, ...]:
    """A shape without its leading channel axis of size 1 (``(1, x, y, z)`` → ``(x, y, z)``).

    Without ``spatial_ndim``, a 3- or 4-axis shape starting with 1 is MONAI's channel-first
    layout of a 2D or 3D image (a volume one voxel thick along x reads as a 2D image).
    """
    shape = tuple(int(s) for s in shape)
    if spatial_ndim is None:
        return shape[1:] if len(shape) in (3, 4) and shape[0] == 1 else shape
    if len(shape) == spatial_ndim + 1 and shape[0] == 1:
        return shape[1:]
    return shape


def _label_values(mask: np.ndarray) -> np.ndarray:
    """The mask as uint8 labels; refuse non-integer, negative or > 255 values."""
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
        raise TypeError(f"mask must hold boolean or integer labels, got dtype {mask.dtype}")
    if mask.size and np.issubdtype(mask.dtype, np.floating):
        if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
            raise ValueError(
                "mask must hold integer labels (threshold probabilities first), "
                f"got non-integer values such as {mask[mask != np.round(mask)].ravel()[:1]}"
            )
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(
            f"mask labels must be in [0, 255] for a uint8 image, got [{mask.min()}, {mask.max()}]"
        )
    return mask.astype(np.uint8)


def _affine_4x4(affine: Any) -> np.ndarray:
    """A 4×4 float64 affine; a 3×3 (2D) affine is embedded with an identity third axis."""
    affine = _as_numpy(affine, "affine").astype(np.float64)
    if affine.shape == (3, 3):
        full = np.eye(4)
        full[:2, :2], full[:2, 3] = affine[:2, :2], affine[:2, 2]
        affine = full
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(f"affine must be a finite 4x4 (or 3x3) matrix, got shape {affine.shape}")
    return affine


def write_nifti_mask(
    mask: Any, affine: Any, path: str | PathLike, image_shape: Sequence[int] | None = None
) -> Path:
    """Write a label mask as a uint8 NIfTI image carrying the input image's affine.

    Args:
        mask: labels ``(x, y[, z])`` or channel-first ``(1, x, y[, z])`` (numpy, torch,
            MetaTensor); boolean or integer values in ``[0, 255]``. A leading axis of size 1
            is the channel (MONAI's layout): ``(1, 64, 64)`` is a 2D mask.
        affine: the input image's voxel-to-RAS affine (4×4, or 3×3 for 2D), e.g.
            ``image.affine`` of the loaded ``MetaTensor``; stored as sform and qform.
        path: the ``.nii``/``.nii.gz`` file to write (its folder is created).
        image_shape: the input image's shape (channel-first accepted); when given, a mask
            of another spatial shape is refused.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: the mask's shape differs from ``image_shape`` (both named), labels
            are not integers in ``[0, 255]``, or the affine is not a finite 4×4 matrix.
        TypeError: the mask is not boolean or numeric.

    Example:
        >>> import tempfile, nibabel
        >>> out = write_nifti_mask(np.ones((4, 3, 2)), np.diag([2.0, 2.0, 3.0, 1.0]), Path(tempfile.mkdtemp()) / "m.nii.gz")
        >>> nibabel.load(out).shape, nibabel.load(out).get_data_dtype().name
        ((4, 3, 2), 'uint8')
    """
    import nibabel

    affine = _affine_4x4(affine)
    array = _as_numpy(mask, "mask")
    array = array.reshape(_spatial_shape(array.shape))
    if image_shape is not None and array.shape != _spatial_shape(image_shape):
        raise ValueError(
            f"mask shape {tuple(array.shape)} differs from the image shape "
            f"{_spatial_shape(image_shape)}; {Path(path).name} not written"
        )
    if array.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or 3D (optionally channel-first), got shape {tuple(array.shape)}")
    labels = _label_values(array)
    image = nibabel.Nifti1Image(labels, affine)
    image.set_sform(affine, code=1)  # scanner coordinates, kept exactly (shear included)
    image.set_qform(affine, code=1)
    image.header.set_xyzt_units("mm")
    with _atomic_target(path) as tmp:
        nibabel.save(image, str(tmp))
    return Path(path)


def _frames_per_dataset(ds: Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _volume_order(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Source headers in the order the project stacks slices (position along the normal)."""
    keys = [series_sort_key(ds) for ds in datasets]
    if len(datasets) > 1 and all(k is not None for k in keys):
        order = np.argsort(np.asarray(keys, dtype=np.float64), kind="stable")
        return [datasets[i] for i in order]
    return list(datasets)


def source_frame_shape(source_datasets: Sequence[Dataset]) -> tuple[int, ...]:
    """The spatial shape ``(x, y[, z])`` the project's loader gives for these source headers.

    Args:
        source_datasets: the headers of one single-frame series, or of one multi-frame file.

    Returns:
        ``(columns, rows, slices)`` for a series or a multi-frame file, ``(columns, rows)``
        for one single-frame image.

    Raises:
        ValueError: no datasets, datasets of different sizes or series, or several
            multi-frame files.
    """
    if len(source_datasets) == 0:
        raise ValueError("source_datasets must hold at least one DICOM dataset, got none")
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in source_datasets}
    if len(sizes) > 1:
        raise ValueError(f"source_datasets differ in size {sorted(sizes)}; expected one series")
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in source_datasets}
    if len(series) > 1:
        raise ValueError(f"source_datasets come from {len(series)} series; expected one series")
    rows, cols = sizes.pop()
    frames = [_frames_per_dataset(ds) for ds in source_datasets]
    if len(source_datasets) > 1 and max(frames) > 1:
        raise ValueError("source_datasets must be single-frame slices or exactly one multi-frame image")
    depth = frames[0] if len(source_datasets) == 1 else len(source_datasets)
    return (cols, rows) if depth == 1 else (cols, rows, depth)


def _package_version() -> str:
    try:
        return version("medglass")
    except PackageNotFoundError:
        return "0+unknown"


def write_dicom_seg(
    mask: Any,
    source_datasets: Sequence[Dataset],
    path: str | PathLike,
    segment_label: str = "lesion",
    *,
    series_description: str = "medglass segmentation",
    series_number: int = 1000,
    algorithm_version: str | None = None,
) -> Path:
    """Write a binary mask as a DICOM Segmentation referencing its source series.

    Nonzero voxels form one segment (``segment_label``, coded as SCT "Morphologically
    abnormal structure" / "Lesion") of a BINARY segmentation whose algorithm
    identification names medglass. Frame ``k`` of the mask (``mask[..., k]``) is the
    source slice at position ``k`` along the slice normal, which is how
    :func:`~transforms.image_loading.load_image` stacks a series, whatever order
    ``source_datasets`` come in; each SEG frame references its source instance. Empty
    frames are omitted (highdicom's default).

    Args:
        mask: ``(x, y[, z])`` or channel-first ``(1, x, y[, z])`` in the loaded image's
            layout; boolean or integer (nonzero = inside).
        source_datasets: headers of the source slices (or of one multi-frame image), e.g.
            from :func:`~transforms.dicom_sources.load_dicom_with_sources`; pixel data is
            not needed.
        path: the file to write (its folder is created).
        segment_label: the segment's label shown by viewers.
        series_description: the SEG series' description.
        series_number: the SEG series' number.
        algorithm_version: version recorded in the algorithm identification (default: the
            installed medglass version).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: the mask's shape differs from the source image's (both named), labels
            are not integers, or the source datasets are not one series.
        TypeError: the mask is not boolean or numeric.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    expected = source_frame_shape(source_datasets)
    array = _drop_channel(_as_numpy(mask, "mask"), len(expected))
    if array.shape != expected:
        raise ValueError(
            f"mask shape {tuple(array.shape)} differs from the image shape {expected} of the "
            f"{len(source_datasets)} source dataset(s); {Path(path).name} not written"
        )
    binary = _label_values(array) > 0
    frames = binary.T if binary.ndim == 3 else binary.T[None]  # (x, y, z) -> (z, rows, cols)
    ordered = _volume_order(source_datasets)
    if len(ordered) == 1 and _frames_per_dataset(ordered[0]) == 1:
        frames = frames[0]  # one single-frame image: a 2D pixel array
    software = algorithm_version or _package_version()
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medglass", family=codes.cid7162.ArtificialIntelligence, version=software, source="medglass"
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=segment_label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    try:
        seg = hd.seg.Segmentation(
            source_images=ordered,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medglass",
            manufacturer_model_name="medglass",
            software_versions=software,
            device_serial_number="0",
            series_description=series_description,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as err:
        where = getattr(ordered[0], "filename", None) or "the source images"
        raise ValueError(
            f"{Path(path).name}: cannot build a DICOM SEG from {where} ({type(err).__name__}: {err})"
        ) from err
    with _atomic_target(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def _check_boxes(boxes: Any) -> np.ndarray:
    array = _as_numpy(boxes, "boxes").astype(np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, 6)
    if array.ndim != 2 or array.shape[1] not in (4, 6):
        raise ValueError(
            f"boxes must be (N, 4) or (N, 6) corners [x0, y0(, z0), x1, y1(, z1)], got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("boxes must be finite, got NaN or infinite coordinates")
    return array


def check_boxes_in_extent(boxes: Any, image_shape: Sequence[int]) -> np.ndarray:
    """Refuse boxes that leave the image: every corner must lie in ``[0, shape]``.

    Args:
        boxes: ``(N, 2 * D)`` corner boxes in index units (upper bound exclusive).
        image_shape: the image's spatial shape ``(x, y[, z])`` (channel-first accepted).

    Returns:
        The boxes as float64 ``(N, 2 * D)``.

    Raises:
        ValueError: wrong box shape, a box whose dimensions differ from the image's, a box
            with a lower corner above its upper corner, or a box outside the image (the
            box's index, its corners and the shape are named).

    Example:
        >>> check_boxes_in_extent([[0, 0, 4, 4]], (8, 8)).shape
        (1, 4)
    """
    array = _check_boxes(boxes)
    dims = array.shape[1] // 2
    shape = _spatial_shape(image_shape, dims)
    if len(shape) != dims:
        raise ValueError(
            f"boxes are {dims}D ({array.shape[1]} coordinates) but the image shape {shape} is not"
        )
    upper = np.asarray(shape, dtype=np.float64)
    for i, box in enumerate(array):
        lo, hi = box[:dims], box[dims:]
        if np.any(lo > hi):
            raise ValueError(f"box {i} {box.tolist()} has a lower corner above its upper corner")
        if np.any(lo < -_EXTENT_TOLERANCE) or np.any(hi > upper + _EXTENT_TOLERANCE):
            raise ValueError(f"box {i} {box.tolist()} lies outside the image extent [0, {list(shape)}]")
    return array


def boxes_to_world(boxes: Any, affine: Any) -> np.ndarray:
    """Map index-space corner boxes to world (RAS mm) corner boxes.

    The box corners go through the affine with MONAI's ``apply_affine_to_boxes`` (float32
    arithmetic), then each axis is sorted into min/max (a flipped axis swaps them). A 2D
    box with a 4×4 affine lies in the plane z = 0 and gets 3D world corners.

    Args:
        boxes: ``(N, 4)`` or ``(N, 6)`` corner boxes in index units.
        affine: the image's voxel-to-RAS affine (4×4, or 3×3 for 2D).

    Returns:
        float64 ``(N, 2 * W)`` world boxes ``[min..., max...]`` with W = 3 for a 4×4 affine.

    Raises:
        ValueError: malformed boxes or affine.

    Example:
        >>> boxes_to_world([[0, 0, 0, 2, 2, 2]], np.diag([-1.0, 1.0, 2.0, 1.0])).tolist()
        [[-2.0, 0.0, 0.0, 0.0, 2.0, 4.0]]
    """
    from monai.apps.detection.transforms.box_ops import apply_affine_to_boxes

    array = _check_boxes(boxes)
    matrix = _as_numpy(affine, "affine").astype(np.float64)
    if matrix.shape not in ((3, 3), (4, 4)) or not np.all(np.isfinite(matrix)):
        raise ValueError(f"affine must be a finite 4x4 (or 3x3) matrix, got shape {matrix.shape}")
    dims = array.shape[1] // 2
    world_dims = matrix.shape[0] - 1
    if dims == 3 and world_dims == 2:
        raise ValueError("3D boxes need a 4x4 affine, got a 3x3 one")
    if dims == 2 and world_dims == 3:  # a 2D image in a 3D world: the plane z = 0
        zeros = np.zeros((len(array), 1))
        array = np.concatenate([array[:, :2], zeros, array[:, 2:], zeros], axis=1)
    if len(array) == 0:
        return np.zeros((0, 2 * world_dims))
    return np.asarray(apply_affine_to_boxes(array, matrix), dtype=np.float64)


def write_boxes_json(
    boxes: Any,
    scores: Any,
    affine: Any,
    path: str | PathLike,
    labels: Any = None,
    source: str | None = None,
    *,
    image_shape: Sequence[int],
) -> Path:
    """Write detections as JSON in world (RAS) millimetres.

    The file holds ``source``, ``image_shape``, ``affine``, the coordinate conventions
    and, per box: its index corners, world ``min``/``max`` corners, ``centre`` and
    ``size_mm``, ``score`` and ``label`` (``null`` when no labels are given).

    Args:
        boxes: ``(N, 4)`` or ``(N, 6)`` corner boxes in index units (upper bound exclusive).
        scores: ``N`` finite scores.
        affine: the image's voxel-to-RAS affine.
        path: the ``.json`` file to write (its folder is created).
        labels: ``N`` integer class labels, or None.
        source: the image the boxes were found on (a path or an identifier), or None.
        image_shape: the image's spatial shape (channel-first accepted); boxes must lie
            inside it.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: a box outside the image (named with the shape), or scores/labels
            whose count differs from the boxes'; nothing is written then.
    """
    index_boxes = check_boxes_in_extent(boxes, image_shape)
    n = len(index_boxes)
    score_array = _as_numpy(scores, "scores").astype(np.float64).reshape(-1)
    if score_array.shape != (n,) or not np.all(np.isfinite(score_array)):
        raise ValueError(f"scores must be {n} finite numbers (one per box), got shape {score_array.shape}")
    label_list: list[int | None] = [None] * n
    if labels is not None:
        label_array = _as_numpy(labels, "labels").reshape(-1)
        if label_array.shape != (n,):
            raise ValueError(f"labels must be {n} integers (one per box), got shape {label_array.shape}")
        label_list = [int(v) for v in label_array]
    matrix = _as_numpy(affine, "affine").astype(np.float64)
    world = boxes_to_world(index_boxes, matrix)
    w = world.shape[1] // 2
    records = [
        {
            "index_box": index_boxes[i].tolist(),
            "world_min": world[i, :w].tolist(),
            "world_max": world[i, w:].tolist(),
            "centre": ((world[i, :w] + world[i, w:]) / 2).tolist(),
            "size_mm": (world[i, w:] - world[i, :w]).tolist(),
            "score": float(score_array[i]),
            "label": label_list[i],
        }
        for i in range(n)
    ]
    document = {
        "source": None if source is None else str(source),
        "coordinate_system": "RAS",
        "units": "mm",
        "box_mode": "index corners [x0, y0(, z0), x1, y1(, z1)], upper bound exclusive (MONAI corner mode); "
        "world corners = affine applied to the index corners (MONAI apply_affine_to_boxes)",
        "image_shape": list(_spatial_shape(image_shape, index_boxes.shape[1] // 2)),
        "affine": matrix.tolist(),
        "boxes": records,
    }
    with _atomic_target(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return Path(path)
