"""Paired datalists (``source`` → ``target``, optional lesion ``mask``) and their transform chain.

A paired datalist is a MONAI datalist JSON (sections ``training``/``validation``/``test``) whose
records hold ``source`` and ``target`` image paths relative to the datalist's folder, and
optionally ``mask`` (nonzero = lesion) and ``id``. :func:`load_paired_datalist` reads one
section (paths resolved and checked as :func:`pipelines.datalists.load_datalist` does for
``image`` records); :func:`paired_transforms` loads with the project's readers
(:class:`~transforms.image_loading.LoadMedicalImaged`), refuses a pair on different voxel grids
(:class:`~transforms.paired_images.CheckSameGridd`), scales both images by **one** linear map
fitted on the source's 0.5th/99.5th percentiles, unclipped
(:class:`~transforms.paired_images.ScaleByReferenced`: the enhancement ``target − source`` keeps
its sign and relative size, and a source alone is scaled as in training), then resizes and pads
with the standard chain (:func:`transforms.preprocessing.preprocessing_transforms`, the mask by
nearest neighbour).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose, MapTransform, RandFlipd, Transform
from monai.utils import StrEnum

from pipelines.datalists import read_section, resolve_paths
from transforms.image_loading import LoadMedicalImaged
from transforms.keys import Keys
from transforms.paired_images import CheckSameGridd, ScaleByReferenced
from transforms.preprocessing import preprocessing_transforms

__all__ = ["PairKeys", "load_paired_datalist", "paired_transforms", "EnsureMaskd"]


class PairKeys(StrEnum):
    """Record and batch keys of paired synthesis."""

    SOURCE = "source"
    TARGET = "target"
    MASK = Keys.MASK
    HAS_MASK = "has_mask"
    SOURCE_SCALE = "source_scale"
    PRED = Keys.PRED
    ID = Keys.ID


_PATH_KEYS = (PairKeys.SOURCE, PairKeys.TARGET, PairKeys.MASK)


def load_paired_datalist(
    path: str | PathLike, section: str = "training", required: bool = True, need_target: bool = True
) -> list[dict[str, Any]]:
    """One section of a paired datalist, reduced to ``source``/``target``/``mask``/``id``, paths resolved.

    Args:
        path: the datalist JSON.
        section: section name.
        required: raise when the section is missing (else return ``[]``).
        need_target: every record must have a ``target``.

    Returns:
        New records with absolute paths; ``id`` defaults to the record's index as text.

    Raises:
        ValueError: unreadable datalist, a missing (required) or empty section, a record without
            ``source`` (or ``target``), or a missing file; the message names datalist, section
            and record.
    """
    path = Path(path)
    items = read_section(path, section, required)
    if not items:
        return []
    needed = (PairKeys.SOURCE, PairKeys.TARGET) if need_target else (PairKeys.SOURCE,)
    records = []
    for i, item in enumerate(items):
        name = item.get(PairKeys.ID, i) if isinstance(item, dict) else i
        where = f"datalist {path}: section {section!r}: record {name!r}"
        if not isinstance(item, dict) or any(not item.get(k) for k in needed):
            raise ValueError(f"{where}: a paired record needs {' and '.join(repr(k) for k in needed)} paths")
        record: dict[str, Any] = {PairKeys.ID: str(name)}
        for key in _PATH_KEYS:
            if item.get(key):
                record[key] = resolve_paths(item[key], path.parent, f"{where} {key}")
        records.append(record)
    return records


class EnsureMaskd(MapTransform):
    """Give every record a binary ``mask`` (zeros where none was given) and a ``has_mask`` flag.

    Batches then always collate; metrics skip the lesion where ``has_mask`` is 0.

    Args:
        reference: key of an image with the mask's shape.
        mask_key: the mask key.
    """

    def __init__(self, reference: str = PairKeys.SOURCE, mask_key: str = PairKeys.MASK) -> None:
        super().__init__([mask_key], allow_missing_keys=True)
        self.reference = reference
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.mask_key in d:
            mask = d[self.mask_key]
            d[self.mask_key] = (mask[:1] != 0).to(torch.float32)
            d[PairKeys.HAS_MASK] = torch.tensor(1.0)
        else:
            d[self.mask_key] = torch.zeros_like(d[self.reference], dtype=torch.float32)
            d[PairKeys.HAS_MASK] = torch.tensor(0.0)
        return d


def paired_transforms(spatial_size: Sequence[int], training: bool = False, flip_prob: float = 0.0) -> Compose:
    """Load, check, jointly scale and resize ``source``/``target`` (if present) and ``mask``.

    Args:
        spatial_size: output spatial size (2 or 3 ints).
        training: add random flips (one draw for source, target and mask).
        flip_prob: flip probability per spatial axis.

    Returns:
        A MONAI ``Compose`` producing ``source``, ``target`` (when the record has one), ``mask``,
        ``has_mask`` and ``source_scale`` (the ``(a_min, a_max)`` that maps the source to [0, 1]).
    """
    src, tgt, mask = PairKeys.SOURCE, PairKeys.TARGET, PairKeys.MASK
    chain: list[Transform] = [
        LoadMedicalImaged((src, tgt), channels=1, allow_missing_keys=True),
        LoadMedicalImaged(mask, channels=None, allow_missing_keys=True),
        CheckSameGridd((src, tgt, mask), allow_missing_keys=True),
        EnsureMaskd(src, mask),
        ScaleByReferenced((src, tgt), reference=src, allow_missing_keys=True),
    ]
    # images are already in [0, 1] units: an identity range keeps the chain's scaling out of the way
    for transform in preprocessing_transforms(
        (src, tgt), spatial_size=spatial_size, channels=1, intensity_range=(0.0, 1.0), mask_keys=(mask,)
    ):
        transform.allow_missing_keys = True  # inference records may have no target
        chain.append(transform)
    if training and flip_prob > 0:
        chain += [
            RandFlipd((src, tgt, mask), prob=flip_prob, spatial_axis=axis, allow_missing_keys=True)
            for axis in range(len(spatial_size))
        ]
    return Compose(chain)
