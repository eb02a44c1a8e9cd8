"""Is an image the model's kind? Three scores against the model's own training images, and their thresholds.

An autoencoder knows when it cannot reconstruct or encode an input. The reference holds, from
the training images, the distribution of three scores and a threshold for each at a high
quantile of the training scores; an image is flagged when any score exceeds its threshold:

- ``recon_error``: mean squared error of the network's reconstruction (eval mode);
- ``unexplained_variance``: that error divided by the image's own variance (floored at
  :data:`VARIANCE_FLOOR`), the share of the image the reconstruction fails to explain. The plain
  error scales with the image's contrast: a foreign scan scaled by the training intensity range
  is often nearly black, and a nearly black image is easy to reconstruct, so the plain error
  misses it where this ratio does not (``bench/bench_ood.py`` prints both);
- ``latent_distance``: Mahalanobis distance of the latent mean ``mu`` under a Gaussian fitted to
  the training codes with scikit-learn's Ledoit–Wolf shrinkage (the score that still works when
  the decoder has learnt little).

Plain numpy; the run-folder side (encoding the training images, caching) is
:mod:`pipelines.ood_reference`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

__all__ = [
    "DEFAULT_QUANTILE",
    "SCORE_NAMES",
    "VARIANCE_FLOOR",
    "OodReference",
    "describe",
    "fit_reference",
    "score",
    "unexplained_variance",
]

DEFAULT_QUANTILE = 0.995
"""Training quantile of each threshold: each score flags about 1 in 200 training images."""

VARIANCE_FLOOR = 1e-3
"""Smallest image variance :func:`unexplained_variance` divides by (model inputs lie in about
[0, 1]; 1e-3 is a standard deviation of about 0.03, the noise level of a flat image), so a blank
image does not divide by zero."""

SCORE_NAMES = {
    "recon_error": ("reconstruction error", "recon_threshold"),
    "unexplained_variance": ("unexplained variance", "unexplained_threshold"),
    "latent_distance": ("latent distance", "latent_threshold"),
}
"""Score key → (words for a report, key of its threshold), in the order reports name them."""

_FORMAT = 2  # version of the JSON written by OodReference.to_json (1: without unexplained variance)


@dataclass
class OodReference:
    """What the training images look like to the model.

    Attributes:
        mean: mean of the training codes, ``(latent_dim,)``.
        precision: inverse of their (shrunk) covariance, ``(latent_dim, latent_dim)``.
        recon_threshold: the reconstruction-error threshold.
        unexplained_threshold: the unexplained-variance threshold.
        latent_threshold: the Mahalanobis-distance threshold.
        quantile: the training quantile the thresholds sit at.
        n_images: training images the reference was fitted on.
    """

    mean: np.ndarray
    precision: np.ndarray
    recon_threshold: float
    unexplained_threshold: float
    latent_threshold: float
    quantile: float
    n_images: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (:meth:`from_json` reads it back)."""
        return {
            "format": _FORMAT,
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            "recon_threshold": self.recon_threshold,
            "unexplained_threshold": self.unexplained_threshold,
            "latent_threshold": self.latent_threshold,
            "quantile": self.quantile,
            "n_images": self.n_images,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OodReference:
        """The reference :meth:`to_json` wrote.

        Raises:
            ValueError: ``data`` is not such a dict (names the missing or malformed key), or was
                written in another format.
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"data must be a dict written by OodReference.to_json, got {type(data).__name__}"
            )
        if data.get("format") != _FORMAT:
            raise ValueError(
                f"data: format {data.get('format')!r}, expected {_FORMAT} (recompute the reference)"
            )
        missing = [k for k in cls.__dataclass_fields__ if k not in data]
        if missing:
            raise ValueError(f"data: no {missing[0]!r}")
        try:
            mean = np.asarray(data["mean"], dtype=np.float64)
            precision = np.asarray(data["precision"], dtype=np.float64)
            thresholds = [
                float(data[k]) for k in ("recon_threshold", "unexplained_threshold", "latent_threshold")
            ]
        except (TypeError, ValueError) as err:
            raise ValueError(f"data: a value is not numeric ({err})") from err
        if mean.ndim != 1 or precision.shape != (mean.size, mean.size):
            raise ValueError(f"data: precision {precision.shape} does not fit mean {mean.shape}")
        return cls(
            mean, precision, *thresholds, quantile=float(data["quantile"]), n_images=int(data["n_images"])
        )


def unexplained_variance(recon_errors: np.ndarray | float, image_variances: np.ndarray | float) -> np.ndarray:
    """Reconstruction error over the image's own variance (floored at :data:`VARIANCE_FLOOR`).

    Example:
        >>> unexplained_variance(np.array([0.01, 0.001]), np.array([0.1, 0.0])).round(3).tolist()
        [0.1, 1.0]
    """
    return np.asarray(recon_errors, dtype=np.float64) / np.maximum(
        np.asarray(image_variances, dtype=np.float64), VARIANCE_FLOOR
    )


def _mahalanobis(mus: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = mus - mean
    distances = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0))
    return np.where(np.isfinite(mus).all(axis=1), distances, np.inf)  # an infinite code is infinitely far


def fit_reference(
    recon_errors: np.ndarray,
    mus: np.ndarray,
    image_variances: np.ndarray,
    quantile: float = DEFAULT_QUANTILE,
) -> OodReference:
    """Fit the reference on the training images' reconstruction errors, latent means and variances.

    Args:
        recon_errors: one reconstruction error (mean squared error) per image, ``(n,)``.
        mus: their latent means, ``(n, latent_dim)``.
        image_variances: the variance of each model input, ``(n,)``.
        quantile: where the thresholds sit among the training scores, in (0.5, 1). The default
            0.995 flags about 1 in 200 training images per score, so at most about 1.5 % with
            the three together; held-out images of the same kind score a little higher than the
            images the network was fitted on (``bench/bench_ood.py`` prints their flagged share).

    Returns:
        The :class:`OodReference`.

    Raises:
        ValueError: fewer than 10 images, mismatched lengths, non-finite values or a bad
            ``quantile`` (the message names the argument).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ref = fit_reference(rng.random(200) * 0.01, rng.normal(size=(200, 4)), np.full(200, 0.1))
        >>> score(ref, 0.5, np.zeros(4), 0.1)["flagged"], score(ref, 0.001, np.zeros(4), 0.1)["flagged"]
        (True, False)
    """
    errors = np.asarray(recon_errors, dtype=np.float64).ravel()
    variances = np.asarray(image_variances, dtype=np.float64).ravel()
    codes = np.asarray(mus, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] != errors.shape[0]:
        raise ValueError(
            f"mus must be (n, latent_dim) with one row per recon error, got {codes.shape} for {errors.shape[0]} errors"
        )
    if variances.shape != errors.shape:
        raise ValueError(
            f"image_variances must hold one value per recon error, got {variances.shape[0]} for {errors.shape[0]}"
        )
    if errors.shape[0] < 10:
        raise ValueError(f"recon_errors: at least 10 training images are needed, got {errors.shape[0]}")
    for name, values in (("recon_errors", errors), ("mus", codes), ("image_variances", variances)):
        if not np.isfinite(values).all():
            raise ValueError(f"{name} must be finite")
    if (errors < 0).any() or (variances < 0).any():
        raise ValueError("recon_errors and image_variances must be non-negative")
    if not 0.5 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0.5, 1), got {quantile!r}")
    fitted = LedoitWolf().fit(codes)
    distances = _mahalanobis(codes, fitted.location_, fitted.precision_)
    return OodReference(
        mean=fitted.location_,
        precision=fitted.precision_,
        recon_threshold=float(np.quantile(errors, quantile)),
        unexplained_threshold=float(np.quantile(unexplained_variance(errors, variances), quantile)),
        latent_threshold=float(np.quantile(distances, quantile)),
        quantile=float(quantile),
        n_images=int(errors.shape[0]),
    )


def score(
    reference: OodReference, recon_error: float, mu: np.ndarray, image_variance: float
) -> dict[str, Any]:
    """The three scores of one image, their thresholds and whether it is flagged.

    Args:
        reference: the training images' reference (:func:`fit_reference`).
        recon_error: the image's reconstruction error (mean squared error).
        mu: its latent mean, ``(latent_dim,)``.
        image_variance: the variance of the model input.

    Returns:
        ``recon_error``, ``recon_threshold``, ``unexplained_variance``, ``unexplained_threshold``,
        ``latent_distance``, ``latent_threshold`` and ``flagged`` (any score above its threshold).

    Raises:
        ValueError: a NaN, a negative error or variance, or ``mu`` of the wrong length (naming
            the argument). Infinite values are scored (and flagged).

    Example:
        >>> ref = fit_reference(np.linspace(0.001, 0.01, 50), np.eye(50, 3), np.full(50, 0.1))
        >>> result = score(ref, 0.02, np.zeros(3), 0.1)
        >>> result["flagged"], result["recon_error"] > result["recon_threshold"]
        (True, True)
    """
    code = np.asarray(mu, dtype=np.float64).reshape(1, -1)
    if code.shape[1] != reference.mean.shape[0]:
        raise ValueError(f"mu: expected {reference.mean.shape[0]} values, got {code.shape[1]}")
    if np.isnan(code).any():
        raise ValueError("mu must not contain NaN")
    error, variance = float(recon_error), float(image_variance)
    for name, value in (("recon_error", error), ("image_variance", variance)):
        if np.isnan(value) or value < 0:
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    result = {
        "recon_error": error,
        "recon_threshold": reference.recon_threshold,
        "unexplained_variance": float(unexplained_variance(error, variance)),
        "unexplained_threshold": reference.unexplained_threshold,
        "latent_distance": float(_mahalanobis(code, reference.mean, reference.precision)[0]),
        "latent_threshold": reference.latent_threshold,
    }
    result["flagged"] = bool(any(result[k] > result[t] for k, (_, t) in SCORE_NAMES.items()))
    return result


def describe(result: Mapping[str, Any], name: str) -> str:
    """One sentence for a report: which scores of ``result`` (:func:`score`) exceed their thresholds.

    Example:
        >>> describe({"recon_error": 0.02, "recon_threshold": 0.01, "unexplained_variance": 0.1,
        ...           "unexplained_threshold": 0.2, "latent_distance": 3.0, "latent_threshold": 5.0,
        ...           "flagged": True}, "ct.dcm")[:92]
        "ct.dcm is unlike the model's training images: reconstruction error 0.02 above threshold 0.01"
    """
    parts = [
        (words, result[key], result[threshold], result[key] > result[threshold])
        for key, (words, threshold) in SCORE_NAMES.items()
    ]
    if result["flagged"]:
        above = "; ".join(f"{w} {v:.3g} above threshold {t:.3g}" for w, v, t, over in parts if over)
        return (
            f"{name} is unlike the model's training images: {above}. "
            "The prediction and its explanations may mean nothing for it."
        )
    within = ", ".join(f"{w} {v:.3g} (threshold {t:.3g})" for w, v, t, _ in parts)
    return f"{name} is within the range of the model's training images: {within}."
