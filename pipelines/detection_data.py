"""Detection datalists (``image`` + ``boxes`` + ``box_labels``) and their transform chain.

Records follow the phantom datalists: ``boxes`` are MONAI corner boxes ``[x0, y0(, z0), x1,
y1(, z1)]`` in the loaded array's index units (upper bound exclusive), ``box_labels`` one class
per box (0 = lesion; derived as zeros when absent). The chain loads the image with the
project's reader, refuses boxes that leave the image (:class:`CheckBoxesd`: the file, the box
and the shape are named), and keeps boxes on the image through preprocessing the way MONAI's
detection tutorials do: through world coordinates. The standard image chain
(:func:`transforms.preprocessing.preprocessing_transforms`: grey, intensity, resize, pad)
updates the image's affine; :class:`BoxesFollowImaged` maps the boxes from the loaded grid to
the preprocessed one through both affines with MONAI's ``apply_affine_to_boxes`` (MONAI's
``AffineBoxToWorldCoordinated``/``AffineBoxToImageCoordinated`` pair does the same but needs a
``(D+1)×(D+1)`` affine, and the project's reader gives 2D images a 4×4 one), then
``ClipBoxToImaged``; training adds ``RandFlipBoxd``
(one draw flips image and boxes).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.apps.detection.transforms.box_ops import apply_affine_to_boxes
from monai.apps.detection.transforms.dictionary import ClipBoxToImaged, RandFlipBoxd
from monai.transforms import Compose, DeleteItemsd, EnsureTyped, MapTransform, Transform

from networks.detection import BOX_KEY, BOX_LABEL_KEY
from pipelines.datalists import load_datalist
from transforms.dense_outputs import check_boxes_in_extent
from transforms.image_loading import LoadMedicalImaged
from transforms.keys import Keys
from transforms.preprocessing import preprocessing_transforms

__all__ = [
    "load_detection_datalist",
    "CheckBoxesd",
    "detection_transforms",
    "ORIGINAL_AFFINE",
    "ORIGINAL_SHAPE",
]

ORIGINAL_AFFINE = "original_affine"
"""Key of the loaded image's affine (before resizing): inference maps boxes back through it."""
ORIGINAL_SHAPE = "original_shape"
"""Key of the loaded image's spatial shape."""


def load_detection_datalist(
    path: str | PathLike, section: str = "training", required: bool = True
) -> list[dict[str, Any]]:
    """One section of a detection datalist: ``id``, ``image``, ``label``, ``boxes``, ``box_labels``.

    Args:
        path: the datalist JSON.
        section: section name.
        required: raise when the section is missing (else return ``[]``).

    Returns:
        New records, image paths resolved; ``boxes`` a float32 ``(N, 2 * dims)`` array (``N``
        may be 0), ``box_labels`` an int64 ``(N,)`` array.

    Raises:
        ValueError: unreadable datalist, a missing (required) or empty section, a missing image,
            or a record whose ``boxes``/``box_labels`` are malformed (datalist, section and
            record named).
    """
    path = Path(path)
    records = []
    for i, item in enumerate(load_datalist(path, section, required)):
        name = item.get(Keys.ID, i)
        where = f"datalist {path}: section {section!r}: record {name!r}"
        raw = item.get(BOX_KEY, [])
        try:
            boxes = np.asarray(raw if raw is not None else [], dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{where}: boxes must be a list of [x0, y0(, z0), x1, y1(, z1)], got {raw!r}"
            ) from err
        if boxes.size == 0:
            boxes = boxes.reshape(0, 0)
        elif boxes.ndim != 2 or boxes.shape[1] not in (4, 6) or not np.isfinite(boxes).all():
            raise ValueError(f"{where}: boxes must be a list of [x0, y0(, z0), x1, y1(, z1)], got {raw!r}")
        labels_raw = item.get(BOX_LABEL_KEY)
        labels = np.zeros(len(boxes), dtype=np.int64) if labels_raw is None else np.asarray(labels_raw)
        if labels.shape != (len(boxes),) or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
            raise ValueError(
                f"{where}: box_labels must hold one integer class per box ({len(boxes)}), got {labels_raw!r}"
            )
        records.append(
            {
                Keys.ID: str(name),
                Keys.IMAGE: item[Keys.IMAGE],
                Keys.LABEL: item.get(Keys.LABEL, -1),
                BOX_KEY: boxes,
                BOX_LABEL_KEY: labels.astype(np.int64),
            }
        )
    return records


class CheckBoxesd(MapTransform):
    """Refuse an image of the wrong dimension and boxes outside it; give an empty box list its dimension.

    Uses :func:`transforms.dense_outputs.check_boxes_in_extent` and names the image file in its
    error. Also records the loaded image's affine and shape (:data:`ORIGINAL_AFFINE`,
    :data:`ORIGINAL_SHAPE`) for mapping predictions back.

    Args:
        image_key: the loaded, channel-first image.
        box_key: the boxes.
        spatial_dims: the spatial axes the detector takes (``None``: any).
        allow_missing_keys: records without boxes (inference) pass.

    Raises:
        ValueError: (when called) an image with other than ``spatial_dims`` spatial axes (e.g. a
            volume given to a 2D detector), or a box outside the image or of the wrong dimension;
            the message names the file, the box and the image shape.
    """

    def __init__(
        self,
        image_key: str = Keys.IMAGE,
        box_key: str = BOX_KEY,
        spatial_dims: int | None = None,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__([box_key], allow_missing_keys)
        self.image_key = image_key
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        shape = tuple(int(s) for s in image.shape[1:])
        source = image.meta.get("filename_or_obj", d.get(Keys.ID, "image"))
        if self.spatial_dims is not None and len(shape) != self.spatial_dims:
            raise ValueError(
                f"{source}: a {self.spatial_dims}D detector cannot read this image, it has {len(shape)} spatial "
                f"axes (shape {list(shape)}); use a {len(shape)}D model (spatial_size of {len(shape)} ints)"
            )
        d[ORIGINAL_SHAPE] = torch.tensor(shape)
        d[ORIGINAL_AFFINE] = torch.as_tensor(np.asarray(image.affine), dtype=torch.float64)
        for key in self.key_iterator(d):
            boxes = np.asarray(d[key], dtype=np.float32)
            if boxes.size == 0:
                d[key] = np.zeros((0, 2 * len(shape)), dtype=np.float32)
                continue
            try:
                check_boxes_in_extent(boxes, shape)
            except ValueError as err:
                raise ValueError(f"{source}: {err} (image shape {list(shape)})") from err
            d[key] = boxes
        return d


def index_to_index(source_affine: Any, target_affine: Any, spatial_dims: int) -> torch.Tensor:
    """The ``(D+1)×(D+1)`` map from one grid's index coordinates to another's: ``inv(target) @ source``.

    Both affines map index to world coordinates (4×4, or ``(D+1)×(D+1)``); for a 2D image with
    4×4 affines the in-plane block is taken (resizing and padding do not mix z into x, y).

    Example:
        >>> index_to_index(torch.eye(4), torch.diag(torch.tensor([2.0, 2.0, 1.0, 1.0])), 2).tolist()
        [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1.0]]
    """
    source = torch.as_tensor(np.asarray(source_affine), dtype=torch.float64)
    target = torch.as_tensor(np.asarray(target_affine), dtype=torch.float64)
    matrix = torch.linalg.inv(target) @ source
    keep = [*range(spatial_dims), matrix.shape[0] - 1]
    return matrix[keep][:, keep]


class BoxesFollowImaged(MapTransform):
    """Move boxes from the loaded image's grid (:data:`ORIGINAL_AFFINE`) to the image's current grid.

    Args:
        image_key: the preprocessed image (a ``MetaTensor`` whose affine the spatial transforms
            updated).
        box_key: the boxes, in the loaded image's index units.
    """

    def __init__(self, image_key: str = Keys.IMAGE, box_key: str = BOX_KEY) -> None:
        super().__init__([box_key], allow_missing_keys=True)
        self.image_key = image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        for key in self.key_iterator(d):
            boxes = np.asarray(d[key], dtype=np.float32)
            if len(boxes):
                matrix = index_to_index(d[ORIGINAL_AFFINE], image.affine, image.ndim - 1)
                # index i is voxel i's centre: a box [x0, x1) covers voxels x0 .. x1 - 1, whose outer
                # edges lie at x0 - 0.5 and x1 - 0.5; mapping the edges keeps the box on its voxels
                edges = np.asarray(apply_affine_to_boxes(boxes - 0.5, matrix), dtype=np.float32)
                boxes = edges + np.float32(0.5)
            d[key] = boxes
        return d


def detection_transforms(
    spatial_size: Sequence[int],
    training: bool = False,
    flip_prob: float = 0.0,
    intensity_range: tuple[float, float] | None = None,
) -> Compose:
    """Load an image, check and carry its boxes through preprocessing (and random flips).

    Args:
        spatial_size: output spatial size (2 or 3 ints).
        training: add random flips.
        flip_prob: flip probability per spatial axis.
        intensity_range: ``(a_min, a_max)`` → [0, 1] for every image; ``None``: per-image
            percentiles.

    Returns:
        A MONAI ``Compose`` giving ``image`` (channel-first, ``spatial_size``), ``boxes``
        (float32, index units of the preprocessed image), ``box_labels``,
        :data:`ORIGINAL_AFFINE` and :data:`ORIGINAL_SHAPE`.
    """
    image, boxes, labels = Keys.IMAGE, BOX_KEY, BOX_LABEL_KEY
    chain: list[Transform] = [
        LoadMedicalImaged(image, channels=1),
        CheckBoxesd(image, boxes, spatial_dims=len(spatial_size)),
        *preprocessing_transforms(
            (image,), spatial_size=spatial_size, channels=1, intensity_range=intensity_range
        ),
        BoxesFollowImaged(image, boxes),
        ClipBoxToImaged(
            boxes, label_keys=labels, box_ref_image_keys=image, remove_empty=True, allow_missing_keys=True
        ),
    ]
    if training and flip_prob > 0:
        for axis in range(len(spatial_size)):
            chain.append(
                RandFlipBoxd(image, boxes, box_ref_image_keys=image, prob=flip_prob, spatial_axis=axis)
            )
    chain += [
        EnsureTyped(boxes, dtype=torch.float32, track_meta=False, allow_missing_keys=True),
        EnsureTyped(labels, dtype=torch.long, track_meta=False, allow_missing_keys=True),
        DeleteItemsd(keys=[f"{image}_transforms", f"{boxes}_transforms"]),
    ]
    return Compose(chain)
