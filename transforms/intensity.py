"""Intensity transforms: CT windowing and RGB(A) to grey conversion.

:class:`CTWindow` is a thin subclass of MONAI's ``ScaleIntensityRange`` that takes the radiological
window (centre/width in Hounsfield units, or a named preset) instead of a raw range.

:class:`ToGrey` is written by hand because MONAI (1.6.1) has no colour-to-grey transform: its
only RGB handling is an unweighted channel mean inside ``UltrasoundConfidenceMapTransform``. It
uses the ITU-R BT.601 luma weights (0.299, 0.587, 0.114), as Pillow's ``Image.convert("L")`` does.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from numbers import Real
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, ScaleIntensityRange, Transform

__all__ = ["CT_WINDOW_PRESETS", "CTWindow", "CTWindowd", "ToGrey", "ToGreyd", "resolve_ct_window"]

#: Named CT windows as ``(center, width)`` in Hounsfield units.
CT_WINDOW_PRESETS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "brain": (40.0, 80.0),
        "subdural": (75.0, 215.0),
        "lung": (-600.0, 1500.0),
        "mediastinum": (50.0, 350.0),
        "abdomen": (40.0, 400.0),
        "bone": (400.0, 1800.0),
        "liver": (30.0, 150.0),
    }
)

#: ITU-R BT.601 luma weights for R, G, B.
BT601_WEIGHTS = (0.299, 0.587, 0.114)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def resolve_ct_window(
    window: str | tuple[float, float] | None = None,
    center: float | None = None,
    width: float | None = None,
) -> tuple[float, float]:
    """Turn a preset name or a centre/width into a validated ``(center, width)`` pair.

    Args:
        window: a preset name from :data:`CT_WINDOW_PRESETS` or a ``(center, width)`` pair.
        center: window centre in HU (when ``window`` is None).
        width: window width in HU (when ``window`` is None), > 0.

    Returns:
        ``(center, width)`` as floats.

    Raises:
        ValueError: for an unknown preset (the message lists the presets), a missing, non-finite
            or non-positive width, or both ``window`` and ``center``/``width`` given.

    Example:
        >>> resolve_ct_window("lung")
        (-600.0, 1500.0)
        >>> resolve_ct_window(center=40, width=80)
        (40.0, 80.0)
    """
    if window is not None:
        if center is not None or width is not None:
            raise ValueError(
                f"give either a window/preset or center and width, not both: got {window!r}, "
                f"center={center!r}, width={width!r}"
            )
        if isinstance(window, str):
            if window not in CT_WINDOW_PRESETS:
                raise ValueError(f"window preset must be one of {sorted(CT_WINDOW_PRESETS)}, got {window!r}")
            return CT_WINDOW_PRESETS[window]
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise ValueError(f"window must be a preset name or a (center, width) pair, got {window!r}")
        center, width = window
    if not _is_number(center):
        raise ValueError(f"center must be a finite number of HU, got {center!r}")
    if not _is_number(width) or width <= 0:
        raise ValueError(f"width must be a finite number of HU > 0, got {width!r}")
    return float(center), float(width)


class CTWindow(ScaleIntensityRange):
    """CT windowing: map ``[center - width/2, center + width/2]`` HU to ``[0, 1]``, clipping outside.

    A thin subclass of MONAI's ``ScaleIntensityRange`` (``a_min``/``a_max`` from the window,
    ``b_min=0``, ``b_max=1``, ``clip=True``), so it behaves like it: the output is a torch tensor
    (a ``MetaTensor`` when MONAI tracks metadata) of ``dtype``.

    Args:
        center: window centre in HU.
        width: window width in HU, > 0.
        preset: instead of centre/width, one of :data:`CT_WINDOW_PRESETS` (``"brain"`` 40/80,
            ``"subdural"`` 75/215, ``"lung"`` -600/1500, ``"mediastinum"`` 50/350, ``"abdomen"``
            40/400, ``"bone"`` 400/1800, ``"liver"`` 30/150).
        dtype: output data type. Defaults to float32.

    Raises:
        ValueError: for an unknown preset or an invalid centre/width.

    Example:
        >>> import numpy as np
        >>> CTWindow(preset="brain")(np.array([[[0.0, 40.0, 80.0]]])).tolist()
        [[[0.0, 0.5, 1.0]]]
    """

    def __init__(
        self,
        center: float | None = None,
        width: float | None = None,
        preset: str | None = None,
        dtype: DtypeLike = np.float32,
    ) -> None:
        if preset is not None and not isinstance(preset, str):
            raise ValueError(f"preset must be a preset name, got {preset!r}")
        self.center, self.width = resolve_ct_window(preset, center, width)
        half = self.width / 2.0
        super().__init__(
            a_min=self.center - half, a_max=self.center + half, b_min=0.0, b_max=1.0, clip=True, dtype=dtype
        )


class CTWindowd(MapTransform):
    """Dictionary twin of :class:`CTWindow`.

    Args:
        keys: keys of the CT images to window.
        center: window centre in HU.
        width: window width in HU, > 0.
        preset: instead of centre/width, a name from :data:`CT_WINDOW_PRESETS`.
        dtype: output data type. Defaults to float32.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: for an unknown preset or an invalid centre/width.

    Example:
        >>> import numpy as np
        >>> out = CTWindowd("image", preset="lung")({"image": np.full((1, 2, 2), -600.0)})
        >>> float(out["image"][0, 0, 0])
        0.5
    """

    backend = CTWindow.backend

    def __init__(
        self,
        keys: KeysCollection,
        center: float | None = None,
        width: float | None = None,
        preset: str | None = None,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.windower = CTWindow(center=center, width=width, preset=preset, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.windower(d[key])
        return d


class ToGrey(Transform):
    """Convert a channel-first RGB or RGBA image to one grey channel (ITU-R BT.601 luma).

    1 channel: returned unchanged. 3 channels: ``0.299 R + 0.587 G + 0.114 B``. 4 channels: the
    alpha channel is dropped, then the same luma. The output keeps the input's type (numpy, torch,
    ``MetaTensor`` with its metadata) and device; floating dtypes are kept, integer and bool
    inputs give float32 (no rounding).

    Raises:
        ValueError: for any other channel count (the message names it).

    Example:
        >>> import numpy as np
        >>> rgb = np.array([255.0, 0.0, 0.0]).reshape(3, 1, 1)
        >>> round(float(ToGrey()(rgb)[0, 0, 0]), 3)
        76.245
    """

    backend = ["torch", "numpy"]

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Convert ``img`` (shape ``(C, *spatial)``) to shape ``(1, *spatial)``.

        Args:
            img: channel-first image with 1, 3 or 4 channels.

        Returns:
            The grey image.

        Raises:
            ValueError: if the channel count is not 1, 3 or 4.
        """
        if img.ndim < 2:
            raise ValueError(
                f"img must be channel-first with at least 1 spatial axis, got shape {tuple(img.shape)}"
            )
        channels = int(img.shape[0])
        if channels == 1:
            return img
        if channels not in (3, 4):
            raise ValueError(
                f"ToGrey expects 1 (grey), 3 (RGB) or 4 (RGBA) channels, got {channels} channels "
                f"(shape {tuple(img.shape)})"
            )
        if isinstance(img, torch.Tensor):
            x = img if img.is_floating_point() else img.to(torch.float32)
        else:
            x = img if np.issubdtype(img.dtype, np.floating) else img.astype(np.float32)
        w_r, w_g, w_b = BT601_WEIGHTS
        # channel slices (not x[0]) keep the channel axis and, for a MetaTensor, its metadata
        return x[0:1] * w_r + x[1:2] * w_g + x[2:3] * w_b


class ToGreyd(MapTransform):
    """Dictionary twin of :class:`ToGrey`.

    Args:
        keys: keys of the images to convert.
        allow_missing_keys: don't raise if a key is missing.

    Example:
        >>> import numpy as np
        >>> out = ToGreyd("image")({"image": np.ones((4, 2, 2), dtype=np.float32)})
        >>> out["image"].shape
        (1, 2, 2)
    """

    backend = ToGrey.backend

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = ToGrey()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
