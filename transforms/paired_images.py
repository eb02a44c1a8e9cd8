"""Transforms for paired images (source → target synthesis): same-grid check, one shared intensity scale.

Written here because MONAI has neither: its intensity transforms scale each key on its own (or
by a fixed range), which would erase the very difference a synthesis model must learn (a
post-contrast image scaled by its own percentiles loses its enhancement), and no MONAI
transform refuses two images that do not share a voxel grid.

* :class:`CheckSameGridd` refuses a pair whose spatial shapes or affines differ, naming both
  files.
* :class:`ScaleByReferenced` maps every key through the *same* linear function, fitted on the
  reference key (the source): its ``lower``/``upper`` percentiles go to 0 and 1, unclipped. The
  target keeps its difference to the source (an enhancement shows as values above the source's,
  possibly above 1), and a source alone (inference, no target) is scaled exactly as in
  training. The fitted ``(a_min, a_max)`` is stored under ``<reference>_scale`` so that a
  synthetic image can be mapped back to the source's units.

Example:
    >>> import torch
    >>> d = ScaleByReferenced(("source", "target"), reference="source", lower=0, upper=100)(
    ...     {"source": torch.tensor([[0.0, 10.0]]), "target": torch.tensor([[0.0, 15.0]])})
    >>> d["target"].tolist(), d["source_scale"].tolist()
    ([[0.0, 1.5]], [0.0, 10.0])
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["CheckSameGridd", "ScaleByReferenced", "source_name", "scale_range"]

AFFINE_TOLERANCE = 1e-3
"""Largest absolute difference of two affines' entries (mm) still counted as the same grid."""


def source_name(image: Any, key: Hashable) -> str:
    """The file an image was loaded from (``filename_or_obj`` of a MONAI ``MetaTensor``), else the key."""
    meta = getattr(image, "meta", None) or {}
    return str(meta.get("filename_or_obj") or key)


def scale_range(image: Any, lower: float = 0.5, upper: float = 99.5) -> tuple[float, float]:
    """``(a_min, a_max)``: the ``lower``/``upper`` percentiles of ``image`` (``a_max = a_min + 1`` if flat).

    Example:
        >>> scale_range(np.arange(11.0), 0, 100)
        (0.0, 10.0)
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    lo, hi = (float(v) for v in np.percentile(arr.astype(np.float64), [lower, upper]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


class CheckSameGridd(MapTransform):
    """Refuse images (channel-first) whose spatial shapes or affines differ from the first key's.

    Args:
        keys: keys of the loaded images; the first is the reference.
        allow_missing_keys: skip absent keys (e.g. an optional mask).

    Raises:
        ValueError: when called on a mismatched image: ``"<source file> and <other file>: ..."``.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            return d
        first = present[0]
        ref = d[first]
        ref_affine = getattr(ref, "affine", None)
        for key in present[1:]:
            other = d[key]
            names = f"{source_name(ref, first)} and {source_name(other, key)}"
            if tuple(ref.shape[1:]) != tuple(other.shape[1:]):
                raise ValueError(
                    f"{names}: {first} and {key} must have the same spatial shape, got "
                    f"{tuple(ref.shape[1:])} and {tuple(other.shape[1:])}"
                )
            affine = getattr(other, "affine", None)
            if ref_affine is not None and affine is not None:
                a, b = np.asarray(ref_affine, dtype=np.float64), np.asarray(affine, dtype=np.float64)
                if a.shape != b.shape or not np.allclose(a, b, atol=AFFINE_TOLERANCE):
                    raise ValueError(
                        f"{names}: {first} and {key} must share one voxel grid (same affine), got "
                        f"{np.round(a, 4).tolist()} and {np.round(b, 4).tolist()}"
                    )
        return d


class ScaleByReferenced(MapTransform):
    """Scale every key by one linear map fitted on ``reference`` (see the module docstring).

    Args:
        keys: image keys to scale (the reference among them).
        reference: key whose percentiles define the map.
        lower: percentile mapped to 0.
        upper: percentile mapped to 1.
        allow_missing_keys: skip absent keys.

    Raises:
        ValueError: percentiles not ``0 <= lower < upper <= 100``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        reference: str,
        lower: float = 0.5,
        upper: float = 99.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(
                f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower!r} and {upper!r}"
            )
        self.reference = reference
        self.lower = float(lower)
        self.upper = float(upper)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        lo, hi = scale_range(d[self.reference], self.lower, self.upper)
        for key in self.key_iterator(d):
            d[key] = (d[key] - lo) / (hi - lo)
        d[f"{self.reference}_scale"] = torch.tensor([lo, hi], dtype=torch.float64)
        return d
