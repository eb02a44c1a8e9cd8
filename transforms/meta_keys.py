"""Metadata clean-up for bundle post-processing.

:class:`DropMetaKeysd` is the one transform the bundles need that MONAI lacks: MONAI Label
appends a ``Restored`` post-transform that fails on a class-score vector while the image's
``spatial_shape`` is still in its metadata, so the classification postprocessing drops it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch  # noqa: F401  (doctest)
from monai.config import KeysCollection
from monai.data import MetaTensor  # noqa: F401  (doctest)
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

__all__ = ["DropMetaKeysd"]


class DropMetaKeysd(MapTransform):
    """Remove entries (default ``spatial_shape``) from the metadata of ``MetaTensor`` items.

    The metadata dict is copied first, so the input item is not changed. A legacy
    ``<key>_meta_dict`` entry, when present, loses the same entries.

    Args:
        keys: keys of the ``MetaTensor`` items.
        meta_keys: metadata entries to drop.
        allow_missing_keys: don't raise if a key is missing.

    Example:
        >>> item = {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"spatial_shape": (4, 4)})}
        >>> "spatial_shape" in DropMetaKeysd("image")(item)["image"].meta
        False
    """

    def __init__(
        self,
        keys: KeysCollection,
        meta_keys: Sequence[str] | str = ("spatial_shape",),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.meta_keys = tuple(ensure_tuple(meta_keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            item = d[key]
            if isinstance(item, MetaTensor):
                item = item.clone()
                item.meta = {k: v for k, v in item.meta.items() if k not in self.meta_keys}
                d[key] = item
            legacy = f"{key}_meta_dict"
            if isinstance(d.get(legacy), Mapping):
                d[legacy] = {k: v for k, v in d[legacy].items() if k not in self.meta_keys}
        return d
