"""Data of the segmentation workflow: image/mask records, the label-fraction choice, the transform chains.

Images keep their own size (no resizing: a predicted mask must line up with the input's grid
and affine). Training draws patches of the run's ``patch_size``; evaluation and inference
slide a window of that size over whole images (:mod:`pipelines.segmentation_training`).

Example:
    >>> chain = segmentation_transforms((64, 64), training=False, intensity_range=(0.0, 1.0))
    >>> [type(t).__name__ for t in chain.transforms][:3]
    ['LoadMedicalImaged', 'LoadMedicalImaged', 'CheckSegmentationPaird']
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureTyped,
    MapTransform,
    RandCropByPosNegLabeld,
    RandFlipd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    SpatialPadd,
    Transform,
)

from pipelines.datalists import UNLABELLED, load_datalist, mask_labels
from transforms.image_loading import LoadMedicalImaged
from transforms.keys import Keys

__all__ = [
    "CheckSegmentationPaird",
    "load_segmentation_records",
    "choose_label_fraction",
    "segmentation_transforms",
]


def _source(value: Any) -> str:
    meta = getattr(value, "meta", None) or {}
    return str(meta.get("filename_or_obj", "<array>"))


class CheckSegmentationPaird(MapTransform):
    """Refuse an image of the wrong dimensionality, and a mask whose grid differs from its image's.

    MONAI's transforms would otherwise resize or crop a mismatched pair silently (or fail deep
    inside a crop with no file named); the messages name the files and shapes.

    Args:
        spatial_dims: the network's spatial dims (2 or 3).
        image_key: key of the loaded image (channel first).
        mask_key: key of the loaded mask; skipped when the record has none.

    Raises:
        ValueError: when called on a pair that does not fit (see above).
    """

    def __init__(self, spatial_dims: int, image_key: str = Keys.IMAGE, mask_key: str = Keys.MASK) -> None:
        super().__init__([image_key, mask_key], allow_missing_keys=True)
        self.spatial_dims = spatial_dims
        self.image_key = image_key
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        image_shape = tuple(image.shape[1:])
        if len(image_shape) != self.spatial_dims:
            raise ValueError(
                f"{_source(image)}: a {len(image_shape)}D image (shape {image_shape}) given to a "
                f"{self.spatial_dims}D segmentation model"
            )
        mask = d.get(self.mask_key)
        if mask is not None:
            mask_shape = tuple(mask.shape[1:])
            if mask.shape[0] != 1 or mask_shape != image_shape:
                raise ValueError(
                    f"{_source(mask)}: mask shape {tuple(mask.shape)} differs from its image {_source(image)} "
                    f"shape {tuple(image.shape)} (channel first; the mask needs one channel and the image's grid)"
                )
        return d


def load_segmentation_records(datalist: str | PathLike, section: str, required: bool = True) -> list[dict]:
    """One section's records as ``{id, image, mask, label}``, every record with a mask.

    Args:
        datalist: the datalist JSON.
        section: ``"training"``, ``"validation"``, ``"test"``, ...
        required: raise when the section is missing (else ``[]``).

    Returns:
        New records with absolute ``image``/``mask`` paths; ``label`` is the image class or -1.

    Raises:
        ValueError: an unusable datalist or section (see :func:`pipelines.datalists.load_datalist`),
            or a record without a ``mask`` (naming the datalist, section and record).
    """
    records = load_datalist(datalist, section, required=required)
    out = []
    for i, record in enumerate(records):
        name = record.get(Keys.ID, f"#{i}")
        if not record.get(Keys.MASK):
            raise ValueError(
                f"datalist {datalist}: section {section!r}: record {name!r} has no 'mask' (segmentation needs one per image)"
            )
        label = record.get(Keys.LABEL, UNLABELLED)
        out.append(
            {
                Keys.ID: str(name),
                Keys.IMAGE: record[Keys.IMAGE],
                Keys.MASK: record[Keys.MASK],
                Keys.LABEL: int(label) if isinstance(label, (int, np.integer)) else UNLABELLED,
            }
        )
    return out


def choose_label_fraction(records: Sequence[dict], fraction: float, seed: int = 0) -> list[dict]:
    """The training records whose masks are used: a seeded share, stratified by image label.

    Records with an image ``label`` are chosen per class with
    :func:`pipelines.datalists.mask_labels` (the classifier's label-fraction rule, so both
    workflows keep the same images at the same fraction and seed); records without one are
    chosen by a seeded permutation. At least one record is kept.

    Args:
        records: the training records.
        fraction: share in (0, 1] to keep.
        seed: seed of the choice.

    Returns:
        The kept records, in input order.

    Raises:
        ValueError: ``fraction`` not in (0, 1].

    Example:
        >>> recs = [{"id": str(i), "label": i % 2} for i in range(10)]
        >>> [r["id"] for r in choose_label_fraction(recs, 0.2, seed=0)].__len__()
        2
    """
    if isinstance(fraction, bool) or not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {fraction!r}")
    if fraction == 1.0:
        return list(records)
    labelled = [i for i, r in enumerate(records) if r.get(Keys.LABEL, UNLABELLED) != UNLABELLED]
    unlabelled = [i for i, r in enumerate(records) if r.get(Keys.LABEL, UNLABELLED) == UNLABELLED]
    keep = set()
    if labelled:
        chosen = mask_labels([records[i] for i in labelled], fraction, seed=seed)
        keep.update(i for i, r in zip(labelled, chosen, strict=True) if r[Keys.LABEL] != UNLABELLED)
    if unlabelled:
        n_keep = int(math.floor(fraction * len(unlabelled) + 0.5))
        order = np.random.default_rng(seed).permutation(len(unlabelled))[:n_keep]
        keep.update(unlabelled[j] for j in order)
    if not keep:
        keep.add(int(np.random.default_rng(seed).integers(len(records))))
    return [r for i, r in enumerate(records) if i in keep]


def segmentation_transforms(
    patch_size: Sequence[int],
    training: bool,
    intensity_range: tuple[float, float] | None,
    flip_prob: float = 0.0,
    with_mask: bool = True,
) -> Compose:
    """The chain from a record (``image``, ``mask`` paths) to tensors.

    Load (grey image, mask as stored) → :class:`CheckSegmentationPaird` → intensity to [0, 1]
    (MONAI ``ScaleIntensityRanged`` with ``intensity_range``, unclipped; else per-image
    0.5th/99.5th percentiles, clipped) → mask binarised (MONAI ``AsDiscreted``, instance ids > 0
    become 1) → for training: pad to ``patch_size`` (MONAI ``SpatialPadd``), one patch centred on
    a lesion voxel or on background with equal odds (MONAI ``RandCropByPosNegLabeld``; images
    without a lesion give a background patch) and random flips.

    Args:
        patch_size: the training patch; its length is the spatial dims checked.
        training: add padding, patch sampling and flips.
        intensity_range: ``(a_min, a_max)`` mapped to 0 and 1, or ``None`` for per-image percentiles.
        flip_prob: probability of a flip along each axis (training).
        with_mask: the records have a ``mask`` (inference records need none).

    Returns:
        A MONAI ``Compose``.
    """
    keys = [Keys.IMAGE, Keys.MASK] if with_mask else [Keys.IMAGE]
    chain: list[Transform] = [LoadMedicalImaged(Keys.IMAGE, channels=1)]
    if with_mask:
        chain.append(LoadMedicalImaged(Keys.MASK))
    chain.append(CheckSegmentationPaird(len(patch_size)))
    if intensity_range is not None:
        lo, hi = intensity_range
        chain.append(ScaleIntensityRanged(Keys.IMAGE, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=False))
    else:
        chain.append(
            ScaleIntensityRangePercentilesd(
                Keys.IMAGE, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True
            )
        )
    if with_mask:
        chain.append(AsDiscreted(Keys.MASK, threshold=0.5))
    chain.append(EnsureTyped(keys, track_meta=not training))
    if training:
        chain += [
            SpatialPadd(keys, spatial_size=tuple(patch_size)),
            RandCropByPosNegLabeld(
                keys, label_key=Keys.MASK, spatial_size=tuple(patch_size), pos=1.0, neg=1.0, num_samples=1
            ),
        ]
        if flip_prob > 0:
            chain += [RandFlipd(keys, prob=flip_prob, spatial_axis=axis) for axis in range(len(patch_size))]
    return Compose(chain)
