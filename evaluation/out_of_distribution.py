"""Is an image the model's kind? Two scores against the model's own training images, and their thresholds.

An autoencoder knows when it cannot reconstruct or encode an input: a CT slice given to a
brain-MR model reconstructs badly and lands far from the training codes. The reference holds,
from the training images, the distribution of two scores — the reconstruction error (mean
squared error of the network's reconstruction) and the Mahalanobis distance of the latent mean
``mu`` under a Gaussian fitted with scikit-learn's Ledoit–Wolf shrinkage — and a threshold for
each at a high quantile of the training scores. An image is flagged when either score exceeds
its threshold. Plain numpy; the run-folder side is :mod:`pipelines.ood_reference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.covariance import LedoitWolf

__all__ = ["OodReference", "fit_reference", "score"]


@dataclass
class OodReference:
    """What the training images look like to the model.

    Attributes:
        mean: mean of the training codes, ``(latent_dim,)``.
        precision: inverse of their (shrunk) covariance, ``(latent_dim, latent_dim)``.
        recon_threshold: the reconstruction-error threshold.
        latent_threshold: the Mahalanobis-distance threshold.
        quantile: the training quantile the thresholds sit at.
        n_images: training images the reference was fitted on.
    """

    mean: np.ndarray
    precision: np.ndarray
    recon_threshold: float
    latent_threshold: float
    quantile: float
    n_images: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (:meth:`from_json` reads it back)."""
        return {
            "mean": self.mean.tolist(),
            "precision": self.precision.tolist(),
            "recon_threshold": self.recon_threshold,
            "latent_threshold": self.latent_threshold,
            "quantile": self.quantile,
            "n_images": self.n_images,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OodReference:
        """The reference :meth:`to_json` wrote."""
        return cls(
            mean=np.asarray(data["mean"], dtype=np.float64),
            precision=np.asarray(data["precision"], dtype=np.float64),
            recon_threshold=float(data["recon_threshold"]),
            latent_threshold=float(data["latent_threshold"]),
            quantile=float(data["quantile"]),
            n_images=int(data["n_images"]),
        )


def _mahalanobis(mus: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    centred = mus - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", centred, precision, centred), 0.0))


def fit_reference(recon_errors: np.ndarray, mus: np.ndarray, quantile: float = 0.995) -> OodReference:
    """Fit the reference on the training images' reconstruction errors and latent means.

    Args:
        recon_errors: one reconstruction error per image, ``(n,)``.
        mus: their latent means, ``(n, latent_dim)``.
        quantile: where the thresholds sit among the training scores, in (0.5, 1); 0.995 flags
            about 1 in 200 images like the training ones per score.

    Returns:
        The :class:`OodReference`.

    Raises:
        ValueError: fewer than 10 images, mismatched lengths, non-finite values or a bad ``quantile``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> ref = fit_reference(rng.random(200) * 0.01, rng.normal(size=(200, 4)))
        >>> score(ref, 0.5, np.zeros(4))["flagged"], score(ref, 0.001, np.zeros(4))["flagged"]
        (True, False)
    """
    errors = np.asarray(recon_errors, dtype=np.float64).ravel()
    codes = np.asarray(mus, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[0] != errors.shape[0]:
        raise ValueError(
            f"mus must be (n, latent_dim) with one row per recon error, got {codes.shape} for {errors.shape[0]} errors"
        )
    if errors.shape[0] < 10:
        raise ValueError(f"recon_errors: at least 10 training images are needed, got {errors.shape[0]}")
    if not (np.isfinite(errors).all() and np.isfinite(codes).all()):
        raise ValueError("recon_errors and mus must be finite")
    if not 0.5 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0.5, 1), got {quantile!r}")
    fitted = LedoitWolf().fit(codes)
    distances = _mahalanobis(codes, fitted.location_, fitted.precision_)
    return OodReference(
        mean=fitted.location_,
        precision=fitted.precision_,
        recon_threshold=float(np.quantile(errors, quantile)),
        latent_threshold=float(np.quantile(distances, quantile)),
        quantile=float(quantile),
        n_images=int(errors.shape[0]),
    )


def score(reference: OodReference, recon_error: float, mu: np.ndarray) -> dict[str, Any]:
    """Both scores of one image, their thresholds and whether it is flagged.

    Returns:
        ``recon_error``, ``recon_threshold``, ``latent_distance``, ``latent_threshold`` and
        ``flagged`` (either score above its threshold).
    """
    code = np.asarray(mu, dtype=np.float64).reshape(1, -1)
    if code.shape[1] != reference.mean.shape[0]:
        raise ValueError(f"mu: expected {reference.mean.shape[0]} values, got {code.shape[1]}")
    distance = float(_mahalanobis(code, reference.mean, reference.precision)[0])
    error = float(recon_error)
    return {
        "recon_error": error,
        "recon_threshold": reference.recon_threshold,
        "latent_distance": distance,
        "latent_threshold": reference.latent_threshold,
        "flagged": bool(error > reference.recon_threshold or distance > reference.latent_threshold),
    }
