"""The standard preprocessing chain (after loading): grey, intensity to [0, 1], fixed size.

Everything is MONAI dictionary transforms except :class:`CheckSpatialDimsd`, a few-line guard
written here because MONAI has no transform that rejects an image of the wrong dimensionality:
without it, a 3D volume given a 2D ``spatial_size`` is silently resized over its first two axes
only.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    EnsureTyped,
    MapTransform,
    Resized,
    ResizeWithPadOrCropd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Transform,
)
from monai.utils import ensure_tuple

from transforms.intensity import CTWindowd, ToGreyd, resolve_ct_window
from transforms.intensity_range import check_intensity_range
from transforms.keys import Keys

__all__ = ["CheckSpatialDimsd", "preprocessing_transforms"]


class CheckSpatialDimsd(MapTransform):
    """Reject images whose number of spatial axes is not ``spatial_dims`` (channel-first input).

    Args:
        keys: keys of the images to check.
        spatial_dims: expected number of spatial axes (2 or 3).
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: when called on an image with a different number of spatial axes (the message
            names the key and the shape).

    Example:
        >>> import numpy as np
        >>> CheckSpatialDimsd("image", spatial_dims=2)({"image": np.zeros((1, 4, 4))})["image"].shape
        (1, 4, 4)
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            shape = tuple(d[key].shape)
            if len(shape) - 1 != self.spatial_dims:
                raise ValueError(
                    f"{key}: expected a channel-first image with {self.spatial_dims} spatial axes "
                    f"(len(spatial_size) == {self.spatial_dims}), got shape {shape}"
                )
        return d


def _check_percentiles(percentiles: Any) -> tuple[float, float]:
    ok = (
        isinstance(percentiles, Sequence)
        and len(percentiles) == 2
        and all(isinstance(p, Real) and not isinstance(p, bool) for p in percentiles)
    )
    if not ok or not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
        raise ValueError(
            f"percentiles must be (lower, upper) with 0 <= lower < upper <= 100, got {percentiles!r}"
        )
    return float(percentiles[0]), float(percentiles[1])


def preprocessing_transforms(
    keys: KeysCollection = (Keys.IMAGE,),
    spatial_size: Sequence[int] = (64, 64),
    channels: int = 1,
    window: str | tuple[float, float] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    intensity_range: tuple[float, float] | None = None,
    mask_keys: KeysCollection = (),
) -> list[Transform]:
    """Build the preprocessing chain for loaded, channel-first images (and their masks).

    In order: :class:`CheckSpatialDimsd`; :class:`~transforms.intensity.ToGreyd` on ``keys``
    when ``channels == 1``; intensity scaling of ``keys`` to [0, 1] —
    :class:`~transforms.intensity.CTWindowd` when ``window`` is given, MONAI ``ScaleIntensityRanged``
    when ``intensity_range`` is given (unclipped), else MONAI
    ``ScaleIntensityRangePercentilesd(lower, upper, b_min=0, b_max=1, clip=True)``; MONAI
    ``Resized(spatial_size=max(spatial_size), size_mode="longest")`` (keeps the aspect ratio;
    images bilinear/trilinear with anti-aliasing, masks ``"nearest-exact"`` so they stay
    binary); MONAI ``ResizeWithPadOrCropd(spatial_size)`` (zero padding, centred); MONAI
    ``EnsureTyped``. For a non-square ``spatial_size`` the longest image side is scaled to the
    largest target side, so the image may be centre-cropped along the shorter target axes.

    Args:
        keys: image keys.
        spatial_size: output spatial size; its length (2 or 3) is the expected number of spatial
            axes of every image and mask.
        channels: 1 converts RGB/RGBA images to grey; 3 keeps the channels as loaded.
        window: CT window, a preset name (see :data:`transforms.intensity.CT_WINDOW_PRESETS`) or
            ``(center, width)`` in HU; ``None`` scales by percentiles instead.
        percentiles: ``(lower, upper)`` percentiles mapped to 0 and 1 (clipped) when ``window``
            and ``intensity_range`` are None.
        intensity_range: ``(a_min, a_max)`` mapped to 0 and 1 for every image alike, *not*
            clipped (MONAI ``ScaleIntensityRanged``), instead of per-image percentiles: the
            dataset-level range training computes (see :mod:`transforms.intensity_range`, which
            explains why per-image scaling can hide small bright findings).
        mask_keys: mask/label-map keys: resized with nearest interpolation and padded, never
            intensity-scaled or converted to grey.

    Returns:
        The list of MONAI dictionary transforms (wrap it in ``monai.transforms.Compose``).

    Raises:
        ValueError: for an invalid argument (the message names it), a key given both as image and
            mask key, or (when the chain runs) an image whose spatial axes don't match
            ``len(spatial_size)``.

    Example:
        >>> import numpy as np
        >>> from monai.transforms import Compose
        >>> chain = Compose(preprocessing_transforms(spatial_size=(64, 64)))
        >>> chain({"image": np.random.rand(3, 50, 80)})["image"].shape
        torch.Size([1, 64, 64])
    """
    image_keys = ensure_tuple(keys)
    masks = ensure_tuple(mask_keys)
    if not image_keys:
        raise ValueError(f"keys must name at least one image key, got {keys!r}")
    if set(image_keys) & set(masks):
        raise ValueError(f"keys and mask_keys must not overlap, got {keys!r} and {mask_keys!r}")
    size = tuple(spatial_size) if isinstance(spatial_size, Sequence) else ()
    if len(size) not in (2, 3) or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(f"spatial_size must be 2 or 3 positive ints (2D or 3D), got {spatial_size!r}")
    if isinstance(channels, bool) or channels not in (1, 3):
        raise ValueError(f"channels must be 1 (convert to grey) or 3 (keep RGB), got {channels!r}")
    lower, upper = _check_percentiles(percentiles)
    if window is not None and intensity_range is not None:
        raise ValueError(f"give window or intensity_range, not both; got {window!r} and {intensity_range!r}")
    fixed = None if intensity_range is None else check_intensity_range(intensity_range)
    ndim = len(size)
    all_keys = image_keys + masks

    chain: list[Transform] = [CheckSpatialDimsd(all_keys, spatial_dims=ndim)]
    if channels == 1:
        chain.append(ToGreyd(image_keys))
    if window is not None:
        center, width = resolve_ct_window(window)
        chain.append(CTWindowd(image_keys, center=center, width=width))
    elif fixed is not None:
        chain.append(ScaleIntensityRanged(image_keys, a_min=fixed[0], a_max=fixed[1], b_min=0.0, b_max=1.0))
    else:
        chain.append(
            ScaleIntensityRangePercentilesd(
                image_keys, lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True
            )
        )
    image_mode = "bilinear" if ndim == 2 else "trilinear"
    chain += [
        Resized(
            all_keys,
            spatial_size=max(size),
            size_mode="longest",
            mode=(image_mode,) * len(image_keys) + ("nearest-exact",) * len(masks),
            anti_aliasing=(True,) * len(image_keys) + (False,) * len(masks),
        ),
        ResizeWithPadOrCropd(all_keys, spatial_size=size),
        EnsureTyped(all_keys),
    ]
    return chain
