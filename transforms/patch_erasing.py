"""Random patch erasing for context modelling (the decoder restores erased patches).

:class:`RandPatchErase` erases a random number of axis-aligned boxes whose edge lengths are a
random fraction of the image size, fills them with a constant, the image mean or Gaussian noise,
and records the boxes it erased (``erased_boxes``) so that a run can be replayed and audited.
:class:`RandPatchErased` is its dictionary twin: one draw for every key, so image and mask stay
aligned, and the boxes are stored in the data dictionary.

Why not MONAI's ``RandCoarseDropout``/``RandCoarseTransform`` (checked against monai 1.6.1)?
The sampling and filling are written here, on top of MONAI's ``RandomizableTransform`` and
``monai.data.utils.get_random_patch``, because the coarse transforms:

* take absolute hole sizes, while patches here scale with each image (fractions of its size);
* bias hole sizes upwards when ``max_spatial_size`` is set: in ``RandCoarseTransform.randomize``
  each hole's lower size bound is the previous hole's size, so later holes grow monotonically;
* write into the caller's array in place and return a ``MetaTensor`` for a numpy input, while
  here the input is never modified and the output type is the input type;
* have no "mean"/"noise" fill, and draw fill noise in ``_transform_holes`` (outside
  ``randomize``), so the applied change is not a function of the sampled parameters.

Noise follows TorchIO's ``RandomNoise`` pattern: ``randomize`` draws a seed from the transform's
own random state and the noise is generated from that seed, so the erasure is a pure function of
the sampled parameters and works for any channel count (and for every key of the dictionary twin).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data.utils import get_random_patch
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import ensure_tuple_rep

from transforms.keys import Keys

__all__ = ["RandPatchErase", "RandPatchErased"]

Fill = float | str
_FILL_MODES = ("mean", "noise")


def _check_prob(prob: float) -> float:
    if isinstance(prob, bool) or not isinstance(prob, Real) or not 0.0 <= float(prob) <= 1.0:
        raise ValueError(f"prob must be in [0, 1], got {prob!r}")
    return float(prob)


def _check_num_patches(num_patches: int | Sequence[int]) -> tuple[int, int]:
    values = (num_patches, num_patches) if not isinstance(num_patches, Sequence) else tuple(num_patches)
    ok = len(values) == 2 and all(isinstance(v, Integral) and not isinstance(v, bool) for v in values)
    if not ok or values[0] < 1 or values[0] > values[1]:
        raise ValueError(
            "num_patches must be an int >= 1 or a (min, max) pair of ints with 1 <= min <= max, "
            f"got {num_patches!r}"
        )
    return int(values[0]), int(values[1])


def _check_size_fraction(size_fraction: float | Sequence[float]) -> tuple[float, float]:
    values = (
        (size_fraction, size_fraction) if not isinstance(size_fraction, Sequence) else tuple(size_fraction)
    )
    ok = len(values) == 2 and all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
    if not ok or not all(0.0 < float(v) <= 1.0 for v in values) or values[0] > values[1]:
        raise ValueError(
            "size_fraction must be a fraction in (0, 1] or a (min, max) pair of fractions in (0, 1] "
            f"with min <= max, got {size_fraction!r}"
        )
    return float(values[0]), float(values[1])


def _check_fill(fill: Fill) -> Fill:
    if isinstance(fill, str):
        if fill not in _FILL_MODES:
            raise ValueError(f"fill must be a number, 'mean' or 'noise', got {fill!r}")
        return fill
    if isinstance(fill, bool) or not isinstance(fill, Real):
        raise ValueError(f"fill must be a number, 'mean' or 'noise', got {fill!r}")
    return float(fill)


def _channel_stats(img: NdarrayOrTensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation as float64 arrays of shape (C,)."""
    flat = img.reshape(img.shape[0], -1)
    if isinstance(flat, torch.Tensor):
        flat64 = flat.detach().to(torch.float64)
        return flat64.mean(dim=1).cpu().numpy(), flat64.std(dim=1, correction=0).cpu().numpy()
    flat64 = np.asarray(flat, dtype=np.float64)
    return flat64.mean(axis=1), flat64.std(axis=1)


class RandPatchErase(RandomizableTransform):
    """Erase random rectangular patches of a channel-first image and record the erased boxes.

    The number of patches is drawn from ``num_patches``; for every patch and every spatial axis of
    size ``n``, an edge fraction ``f`` is drawn uniformly from ``size_fraction`` and the edge
    length is ``clip(round(f * n), 1, n)``; the patch position is uniform inside the image. Patches
    may overlap. All channels are erased. All randomness happens in :meth:`randomize` through
    ``self.R``; :meth:`__call__` with ``randomize=False`` re-applies the last draw.

    After a call, :attr:`erased_boxes` lists the boxes as ``[start_0, ..., start_k, end_0, ...,
    end_k]`` in the array's spatial-axis order, ends exclusive (2D: ``[x0, y0, x1, y1]``, 3D:
    ``[x0, y0, z0, x1, y1, z1]``); it is empty when the transform was not applied. The input is
    never modified; the output has the input's type (numpy, torch or ``MetaTensor`` with its
    metadata), dtype and device.

    Args:
        num_patches: number of patches, an int or an inclusive ``(min, max)`` range.
        size_fraction: edge length as a fraction of the image size along each spatial axis, a
            fraction in (0, 1] or a ``(min, max)`` range of fractions.
        fill: a number (constant fill), ``"mean"`` (each channel's mean) or ``"noise"``
            (Gaussian noise with each channel's mean and standard deviation; values are cast to
            the image dtype). Statistics are those of the whole input image.
        prob: probability of applying the transform, as in MONAI. Defaults to 1.0 (context
            modelling erases every training image).

    Raises:
        ValueError: if an argument is out of range (the message names the argument).

    Example:
        >>> import numpy as np
        >>> eraser = RandPatchErase(num_patches=2, size_fraction=(0.1, 0.25), fill=0.0)
        >>> _ = eraser.set_random_state(seed=0)
        >>> out = eraser(np.ones((1, 64, 64), dtype=np.float32))
        >>> len(eraser.erased_boxes), out.shape
        (2, (1, 64, 64))
    """

    backend = ["torch", "numpy"]

    def __init__(
        self,
        num_patches: int | Sequence[int] = 1,
        size_fraction: float | Sequence[float] = (0.1, 0.25),
        fill: Fill = 0.0,
        prob: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob=_check_prob(prob))
        self.num_patches = _check_num_patches(num_patches)
        self.size_fraction = _check_size_fraction(size_fraction)
        self.fill = _check_fill(fill)
        self.erased_boxes: list[list[int]] = []
        self.hole_coords: list[tuple[slice, ...]] = []  # MONAI RandCoarseTransform's name for the same boxes
        self._noise_seed = 0
        self._spatial_shape: tuple[int, ...] = ()

    def randomize(self, img_size: Sequence[int]) -> None:
        """Draw whether to apply, and the boxes and noise seed for an image of this spatial size.

        Args:
            img_size: spatial shape of the image (without the channel axis).
        """
        super().randomize(None)
        self.erased_boxes = []
        self.hole_coords = []
        self._spatial_shape = tuple(int(s) for s in img_size)
        if not self._do_transform:
            return
        low, high = self.num_patches
        count = int(self.R.randint(low, high + 1))
        f_low, f_high = self.size_fraction
        for _ in range(count):
            size = [min(max(round(self.R.uniform(f_low, f_high) * n), 1), n) for n in self._spatial_shape]
            patch = get_random_patch(self._spatial_shape, size, self.R)
            self.erased_boxes.append([s.start for s in patch] + [s.stop for s in patch])
            self.hole_coords.append((slice(None), *patch))
        self._noise_seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(
        self, img: NdarrayOrTensor, randomize: bool = True, fill: Fill | None = None
    ) -> NdarrayOrTensor:
        """Erase the patches.

        Args:
            img: channel-first image, shape ``(C, *spatial)``.
            randomize: draw new boxes first; ``False`` re-applies the last draw.
            fill: overrides ``self.fill`` for this call (used by the dictionary twin for masks).

        Returns:
            A new image of the input's type with the boxes filled (the input itself when the
            transform is not applied).

        Raises:
            ValueError: if the image has no spatial axis, if ``fill`` is invalid, or (with
                ``randomize=False``) if the last draw was for a different spatial shape.
        """
        if img.ndim < 2:
            raise ValueError(
                f"img must be channel-first with at least 1 spatial axis, got shape {tuple(img.shape)}"
            )
        spatial = tuple(int(s) for s in img.shape[1:])
        if randomize:
            self.randomize(spatial)
        if not self._do_transform or not self.erased_boxes:
            return img
        if spatial != self._spatial_shape:
            raise ValueError(
                f"img spatial shape must match the shape the boxes were drawn for, {self._spatial_shape}, "
                f"got {spatial}"
            )
        return self._erase(img, self.fill if fill is None else _check_fill(fill))

    def _erase(self, img: NdarrayOrTensor, fill: Fill) -> NdarrayOrTensor:
        """Fill ``self.hole_coords`` of a copy of ``img``: deterministic given the sampled parameters."""
        out = img.clone() if isinstance(img, torch.Tensor) else np.array(img, copy=True)
        if fill == "mean" or fill == "noise":
            mean, std = _channel_stats(img)
        if fill == "noise":
            rng = np.random.default_rng(self._noise_seed)
        bcast = (slice(None),) + (None,) * (img.ndim - 1)  # (C,) -> (C, 1, ..., 1)
        for hole in self.hole_coords:
            if fill == "mean":
                value: Any = mean[bcast]
            elif fill == "noise":
                box = tuple(s.stop - s.start for s in hole[1:])
                value = mean[bcast] + std[bcast] * rng.standard_normal((img.shape[0], *box))
            else:
                value = fill
            if isinstance(out, torch.Tensor) and isinstance(value, np.ndarray):
                value = torch.as_tensor(value, device=out.device).to(out.dtype)
            elif isinstance(value, np.ndarray):
                value = value.astype(out.dtype, copy=False)
            out[hole] = value
        return out


class RandPatchErased(MapTransform, RandomizableTransform):
    """Dictionary twin of :class:`RandPatchErase`: one draw for all keys, boxes stored in the data.

    The boxes are drawn for the spatial shape of the first present key and applied to every key
    (all keys must share that spatial shape), so image and mask stay aligned. The boxes are stored
    in ``d[erased_boxes_key]`` as an ``int64`` array of shape ``(n, 2 * ndim)`` (``(0, 2 * ndim)``
    when the transform was not applied).

    Args:
        keys: keys of the images to erase.
        num_patches: see :class:`RandPatchErase`.
        size_fraction: see :class:`RandPatchErase`.
        fill: a fill for all keys, or one per key (e.g. ``("noise", 0)`` for image and mask).
        prob: probability of applying the transform (one draw for all keys).
        erased_boxes_key: where to store the boxes. Defaults to ``Keys.ERASED_BOXES``.
        allow_missing_keys: don't raise if a key is missing.

    Raises:
        ValueError: if an argument is out of range (the message names the argument).

    Example:
        >>> import numpy as np
        >>> eraser = RandPatchErased(keys=("image", "mask"), num_patches=(1, 3), fill=("mean", 0))
        >>> _ = eraser.set_random_state(seed=0)
        >>> out = eraser({"image": np.ones((1, 32, 32)), "mask": np.ones((1, 32, 32))})
        >>> out["erased_boxes"].shape[1]
        4
    """

    backend = RandPatchErase.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_patches: int | Sequence[int] = 1,
        size_fraction: float | Sequence[float] = (0.1, 0.25),
        fill: Fill | Sequence[Fill] = 0.0,
        prob: float = 1.0,
        erased_boxes_key: Hashable = Keys.ERASED_BOXES,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=_check_prob(prob))
        fills = ensure_tuple_rep(fill, len(self.keys))  # raises ValueError on a length mismatch
        self.fill = tuple(_check_fill(f) for f in fills)
        self.eraser = RandPatchErase(num_patches=num_patches, size_fraction=size_fraction, prob=1.0)
        self.erased_boxes_key = erased_boxes_key

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandPatchErased:
        super().set_random_state(seed, state)
        self.eraser.set_random_state(seed, state)
        return self

    @property
    def erased_boxes(self) -> list[list[int]]:
        """Boxes erased by the last call (empty when not applied)."""
        return self.eraser.erased_boxes if self._do_transform else []

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, Any]:
        """Erase the same boxes in every key and store them under ``erased_boxes_key``.

        Args:
            data: dictionary of channel-first images.

        Returns:
            A new dictionary with the erased images and the boxes.
        """
        d = dict(data)
        self.randomize(None)
        first = self.first_key(d)
        if first == ():
            return d
        spatial = tuple(d[first].shape[1:])
        if self._do_transform:
            self.eraser.randomize(spatial)
            for key, fill in self.key_iterator(d, self.fill):
                d[key] = self.eraser(d[key], randomize=False, fill=fill)
            boxes = self.eraser.erased_boxes
        else:
            boxes = []
        d[self.erased_boxes_key] = np.asarray(boxes, dtype=np.int64).reshape(len(boxes), 2 * len(spatial))
        return d
