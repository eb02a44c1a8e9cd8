"""Quality of a synthetic image (e.g. post-contrast from pre-contrast): whole image, lesion, enhancement.

A synthetic post-contrast image can score well over the whole image while missing the lesion
that the contrast agent lights up, so three groups of numbers are computed:

* whole image: MONAI's ``SSIMMetric``, ``PSNRMetric`` and ``MAEMetric`` of synthetic vs target;
* in the lesion (``mask`` nonzero): MAE and PSNR over the mask's voxels exactly; SSIM, a
  windowed statistic that is undefined on a scattered set of voxels, over the mask's **bounding
  box dilated by** ``margin`` **voxels** (clipped to the image), with a smaller window when the
  box is smaller than the 11-voxel window (the Gaussian's sigma shrinks with it);
* lesion by lesion (connected components of the mask): does a lesion that enhances in the real
  image enhance in the synthetic one (sensitivity), and does a non-enhancing one falsely
  enhance — by the mean enhancement over the lesion against ``threshold``;
* enhancement maps (``synthetic − source`` vs ``target − source``): their Pearson correlation
  inside the body, and the Dice overlap (MONAI ``compute_dice``) of the regions enhancing by more
  than ``threshold``, inside the body. The body is estimated from the target when not given
  (:func:`evaluation.body_mask.estimate_body_mask`).

Images are single-channel arrays ``(*spatial)`` or ``(1, *spatial)`` (numpy or torch), scaled so
that ``data_range`` is their intensity range (1 for the [0, 1] images training produces).
Plain functions: no engine, no files.

Example:
    >>> import numpy as np
    >>> img = np.linspace(0, 1, 256).reshape(16, 16)
    >>> m = image_metrics(img, img)
    >>> round(m["ssim"], 6), m["mae"], m["psnr"]
    (1.0, 0.0, inf)
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from monai.metrics import MAEMetric, PSNRMetric, SSIMMetric, compute_dice
from scipy import ndimage

from evaluation.body_mask import estimate_body_mask

__all__ = [
    "DEFAULT_SSIM_WINDOW",
    "image_metrics",
    "lesion_metrics",
    "enhancement_agreement",
    "synthesis_metrics",
    "lesion_box",
    "lesion_enhancement",
    "lesion_detection_rates",
    "LESION_COUNTS",
]

LESION_COUNTS = ("lesions_enhancing", "lesions_detected", "lesions_not_enhancing", "lesions_false_enhanced")
"""Per-case lesion counts of :func:`lesion_enhancement` (pooled ratios: :func:`lesion_detection_rates`)."""

DEFAULT_SSIM_WINDOW = 11
"""SSIM window side (voxels), MONAI's default and Wang et al.'s (Gaussian, sigma 1.5)."""

SSIM_SIGMA = 1.5
"""Sigma of the SSIM window at the default side; a smaller window scales it down in proportion."""


def _spatial(array: Any, name: str, spatial_dims: int | None = None) -> np.ndarray:
    """``array`` as float64 numpy of its spatial shape (a leading channel axis of 1 dropped)."""
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    arr = arr.astype(np.float64)
    if spatial_dims is None:
        spatial_dims = arr.ndim - 1 if arr.ndim in (3, 4) and arr.shape[0] == 1 else arr.ndim
    if arr.ndim == spatial_dims + 1 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim not in (2, 3) or arr.ndim != spatial_dims:
        raise ValueError(
            f"{name} must be a single-channel 2D/3D image (*spatial) or (1, *spatial), got shape {tuple(arr.shape)}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return arr


def _same_shape(**arrays: np.ndarray) -> None:
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"images must have the same shape, got {shapes}")


def _check_range(data_range: float) -> float:
    if isinstance(data_range, bool) or not isinstance(data_range, Real) or not data_range > 0:
        raise ValueError(f"data_range must be a number > 0, got {data_range!r}")
    return float(data_range)


def _batch(arr: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(arr, dtype=torch.float64)[None, None]


def _ssim(pred: np.ndarray, target: np.ndarray, data_range: float, window: int) -> float:
    """MONAI SSIM with a window shrunk (odd, >= 3, sigma in proportion) to fit; NaN below 3 voxels.

    MONAI computes in float32: for flat regions the contrast term is then off by ~1e-4.
    """
    side = min(window, min(pred.shape))
    side = side if side % 2 == 1 else side - 1
    if side < 3:
        return float("nan")
    sigma = SSIM_SIGMA * side / DEFAULT_SSIM_WINDOW
    metric = SSIMMetric(spatial_dims=pred.ndim, data_range=data_range, win_size=side, kernel_sigma=sigma)
    return float(metric(_batch(pred), _batch(target)).mean())


def _psnr(mse: float, data_range: float) -> float:
    return float("inf") if mse == 0 else 20 * math.log10(data_range) - 10 * math.log10(mse)


def image_metrics(
    pred: Any, target: Any, data_range: float = 1.0, window: int = DEFAULT_SSIM_WINDOW
) -> dict[str, float]:
    """Whole-image SSIM, PSNR (dB) and MAE of ``pred`` against ``target`` (MONAI metrics).

    Args:
        pred: the synthetic image.
        target: the real image.
        data_range: intensity range (the PSNR peak and SSIM's constants).
        window: SSIM window side (shrunk, with its sigma, to fit a smaller image).

    Returns:
        ``{"ssim", "psnr", "mae"}``; PSNR is ``inf`` for identical images.

    Raises:
        ValueError: shapes differ, an image is not single-channel 2D/3D or not finite, or
            ``data_range`` is not positive.

    Example:
        >>> img = np.zeros((16, 16))
        >>> m = image_metrics(img + 0.1, img)
        >>> round(m["mae"], 6), round(m["psnr"], 6)
        (0.1, 20.0)
    """
    data_range = _check_range(data_range)
    p, t = _spatial(pred, "pred"), _spatial(target, "target")
    _same_shape(pred=p, target=t)
    mae = float(MAEMetric()(_batch(p), _batch(t)).mean())
    mse = float(np.mean((p - t) ** 2))
    psnr = float("inf") if mse == 0 else float(PSNRMetric(max_val=data_range)(_batch(p), _batch(t)).mean())
    return {"ssim": _ssim(p, t, data_range, window), "psnr": psnr, "mae": mae}


def lesion_box(mask: Any, margin: int = 3) -> tuple[slice, ...] | None:
    """Bounding box of ``mask != 0`` grown by ``margin`` voxels per side (clipped), or ``None`` if empty.

    Example:
        >>> m = np.zeros((10, 10)); m[4:6, 5] = 1
        >>> lesion_box(m, margin=2)
        (slice(2, 8, None), slice(3, 8, None))
    """
    if isinstance(margin, bool) or not isinstance(margin, Integral) or margin < 0:
        raise ValueError(f"margin must be an int >= 0, got {margin!r}")
    m = _spatial(mask, "mask") != 0
    found = ndimage.find_objects(m.astype(np.int32))
    if not found or found[0] is None:
        return None
    return tuple(
        slice(max(0, s.start - margin), min(n, s.stop + margin))
        for s, n in zip(found[0], m.shape, strict=True)
    )


def lesion_metrics(
    pred: Any,
    target: Any,
    mask: Any,
    data_range: float = 1.0,
    margin: int = 3,
    window: int = DEFAULT_SSIM_WINDOW,
) -> dict[str, float]:
    """SSIM, PSNR and MAE in the lesion.

    MAE and PSNR are computed over the voxels where ``mask`` is nonzero. SSIM is computed on the
    mask's bounding box dilated by ``margin`` voxels on every side (clipped to the image), since
    SSIM compares local windows and is not defined on a set of scattered voxels; the window
    shrinks to the box's smallest side (odd, at least 3, else NaN).

    Args:
        pred: the synthetic image.
        target: the real image.
        mask: lesion mask, same shape (nonzero = lesion).
        data_range: intensity range.
        margin: voxels added to each side of the bounding box for SSIM.
        window: SSIM window side.

    Returns:
        ``{"lesion_ssim", "lesion_psnr", "lesion_mae"}``, all NaN for an empty mask.

    Raises:
        ValueError: shapes differ, or an invalid argument.

    Example:
        >>> t = np.zeros((16, 16)); m = np.zeros((16, 16)); m[6:10, 6:10] = 1
        >>> p = t + 0.5 * m
        >>> round(lesion_metrics(p, t, m)["lesion_mae"], 6)
        0.5
    """
    data_range = _check_range(data_range)
    p, t = _spatial(pred, "pred"), _spatial(target, "target")
    m = _spatial(mask, "mask") != 0
    _same_shape(pred=p, target=t, mask=m)
    box = lesion_box(m, margin)
    if box is None:
        return {"lesion_ssim": float("nan"), "lesion_psnr": float("nan"), "lesion_mae": float("nan")}
    diff = p[m] - t[m]
    return {
        "lesion_ssim": _ssim(p[box], t[box], data_range, window),
        "lesion_psnr": _psnr(float(np.mean(diff**2)), data_range),
        "lesion_mae": float(np.mean(np.abs(diff))),
    }


def enhancement_agreement(
    pre: Any, pred: Any, target: Any, body: Any = None, threshold: float = 0.1
) -> dict[str, float]:
    """Agreement of the predicted enhancement ``pred − pre`` with the true one ``target − pre``.

    Args:
        pre: the source (pre-contrast) image.
        pred: the synthetic image.
        target: the real (post-contrast) image.
        body: where to compare (boolean, same shape); ``None``: estimated from ``target``
            (:func:`evaluation.body_mask.estimate_body_mask`; the whole image when it finds none).
        threshold: an enhancement above it (in image units) counts as an enhancing voxel.

    Returns:
        ``enhancement_correlation``: Pearson correlation of the two maps inside the body (NaN
        when either is constant there); ``enhancement_dice``: Dice of ``pred − pre > threshold``
        and ``target − pre > threshold`` inside the body (MONAI ``compute_dice``; 1 when both
        are empty).

    Raises:
        ValueError: shapes differ, ``threshold`` not a number, or an empty ``body`` given.

    Example:
        >>> pre = np.ones((16, 16)); lesion = np.zeros((16, 16)); lesion[4:8, 4:8] = 1
        >>> m = enhancement_agreement(pre, pre + 0.5 * lesion, pre + lesion, body=np.ones((16, 16), bool))
        >>> round(m["enhancement_correlation"], 6), m["enhancement_dice"]
        (1.0, 1.0)
    """
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    s, p, t = _spatial(pre, "pre"), _spatial(pred, "pred"), _spatial(target, "target")
    inside = estimate_body_mask(t) if body is None else _spatial(body, "body") != 0
    if body is None and not inside.any():  # a flat target: no body to find, compare everywhere
        inside = np.ones(t.shape, bool)
    _same_shape(pre=s, pred=p, target=t, body=inside)
    if not inside.any():
        raise ValueError("the body mask is empty: nothing to compare")
    predicted, true = (p - s)[inside], (t - s)[inside]
    if predicted.std() == 0 or true.std() == 0:
        correlation = float("nan")
    else:
        correlation = float(np.corrcoef(predicted, true)[0, 1])
    pred_region = torch.as_tensor(predicted > threshold, dtype=torch.float32)[None, None]
    true_region = torch.as_tensor(true > threshold, dtype=torch.float32)[None, None]
    dice = float(compute_dice(pred_region, true_region, include_background=True, ignore_empty=False).mean())
    return {"enhancement_correlation": correlation, "enhancement_dice": dice}


def lesion_enhancement(
    pre: Any, pred: Any, target: Any, mask: Any, threshold: float = 0.1
) -> dict[str, float]:
    """Lesion-level enhancement detection: each connected lesion of ``mask`` enhances or not, really and predicted.

    A lesion enhances when its mean enhancement (``target − pre`` really, ``pred − pre``
    predicted) exceeds ``threshold``; the mean over the lesion averages the acquisition noise
    away, which a voxel threshold would not.

    Args:
        pre: the source image.
        pred: the synthetic image.
        target: the real target image.
        mask: lesion mask (nonzero = lesion; touching lesions count as one).
        threshold: mean enhancement (image units) above which a lesion enhances.

    Returns:
        Counts (as floats): ``lesions_enhancing`` (really), ``lesions_detected`` (of those, predicted
        enhancing), ``lesions_not_enhancing``, ``lesions_false_enhanced`` (of those, predicted
        enhancing).

    Raises:
        ValueError: shapes differ, or ``threshold`` is not a finite number.

    Example:
        >>> pre = np.zeros((16, 16)); mask = np.zeros((16, 16)); mask[2:5, 2:5] = 1; mask[9:12, 9:12] = 1
        >>> target = pre + 0.5 * (np.arange(16)[:, None] < 8) * mask  # the first lesion enhances
        >>> lesion_enhancement(pre, target, target, mask)
        {'lesions_enhancing': 1.0, 'lesions_detected': 1.0, 'lesions_not_enhancing': 1.0, 'lesions_false_enhanced': 0.0}
    """
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    s, p, t, m = (
        _spatial(pre, "pre"),
        _spatial(pred, "pred"),
        _spatial(target, "target"),
        _spatial(mask, "mask"),
    )
    _same_shape(pre=s, pred=p, target=t, mask=m)
    labels, n = ndimage.label(m != 0)
    index = np.arange(1, n + 1)
    real = np.asarray(ndimage.mean(t - s, labels, index)) > threshold if n else np.zeros(0, bool)
    predicted = np.asarray(ndimage.mean(p - s, labels, index)) > threshold if n else np.zeros(0, bool)
    return {
        "lesions_enhancing": float(real.sum()),
        "lesions_detected": float((real & predicted).sum()),
        "lesions_not_enhancing": float((~real).sum()),
        "lesions_false_enhanced": float((~real & predicted).sum()),
    }


def lesion_detection_rates(metrics: dict[str, float], prefix: str = "") -> dict[str, float]:
    """Pooled ``enhancing_lesion_sensitivity`` and ``false_enhancement_rate`` from (mean) lesion counts.

    Args:
        metrics: holds the :data:`LESION_COUNTS` (per case, or their means over cases: the ratio
            of means over the same cases is the ratio of sums).
        prefix: the prefix of the keys (``"val_"``, ``"test_"``).

    Returns:
        The two rates (NaN when there is no lesion of the kind).

    Example:
        >>> lesion_detection_rates({"lesions_enhancing": 2, "lesions_detected": 1, "lesions_not_enhancing": 4,
        ...                         "lesions_false_enhanced": 1})
        {'enhancing_lesion_sensitivity': 0.5, 'false_enhancement_rate': 0.25}
    """

    def ratio(a: str, b: str) -> float:
        den = float(metrics.get(prefix + b, float("nan")))
        return float(metrics[prefix + a]) / den if math.isfinite(den) and den > 0 else float("nan")

    return {
        prefix + "enhancing_lesion_sensitivity": ratio("lesions_detected", "lesions_enhancing"),
        prefix + "false_enhancement_rate": ratio("lesions_false_enhanced", "lesions_not_enhancing"),
    }


def synthesis_metrics(
    pre: Any,
    pred: Any,
    target: Any,
    mask: Any = None,
    data_range: float = 1.0,
    threshold: float = 0.1,
    margin: int = 3,
) -> dict[str, float]:
    """All metrics of one case: whole image, lesion (NaN without a mask) and enhancement agreement.

    Args:
        pre: source image.
        pred: synthetic image.
        target: real target image.
        mask: lesion mask or ``None``.
        data_range: intensity range.
        threshold: enhancement threshold of :func:`enhancement_agreement`.
        margin: bounding-box margin of :func:`lesion_metrics`.

    Returns:
        ``ssim, psnr, mae, lesion_ssim, lesion_psnr, lesion_mae, enhancement_correlation,
        enhancement_dice`` and, with a mask, the lesion counts of :func:`lesion_enhancement`.

    Raises:
        ValueError: as the functions it calls.
    """
    out = image_metrics(pred, target, data_range)
    if mask is None:
        out.update({"lesion_ssim": float("nan"), "lesion_psnr": float("nan"), "lesion_mae": float("nan")})
    else:
        out.update(lesion_metrics(pred, target, mask, data_range, margin))
        out.update(lesion_enhancement(pre, pred, target, mask, threshold))
    out.update(enhancement_agreement(pre, pred, target, threshold=threshold))
    return out
