"""A learnt prior over autoencoder latents: a Gaussian (mixture) in a PCA subspace, and posterior draws.

A β-VAE's nominal prior ``N(0, I)`` is not where its images live: with a small KL weight the
posterior of each latent cell sits far from it, and decoding ``N(0, I)`` draws gives no image.
Synthetic images are drawn instead from a *learnt* prior fitted to the posterior means of the
training images (the aggregate posterior, as in two-stage VAEs): scikit-learn's ``PCA`` reduces
the flattened latents to ``n_components`` directions and ``GaussianMixture`` (full covariance;
one component is the maximum-likelihood Gaussian) models the coordinates there.
:func:`posterior_draws` is the other source: the posterior ``N(mu_i, diag(exp(logvar_i)))`` of a
training image ``i`` drawn at random, which stays close to real images.

Only the sampling is written here (plain numpy, seeded ``numpy.random.Generator``), so that the
fitted model is a handful of arrays that can be cached without pickles and draws are exactly
reproducible; the fitting is scikit-learn's.

Example:
    >>> rng = np.random.default_rng(0)
    >>> latents = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 10))
    >>> model = fit_pca_gaussian(latents, n_components=3)
    >>> model.sample(4, np.random.default_rng(1)).shape
    (4, 10)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PcaGaussian", "fit_pca_gaussian", "posterior_draws"]


@dataclass
class PcaGaussian:
    """A Gaussian mixture over PCA coordinates of flattened latents.

    A draw is ``mean + coords @ components`` with ``coords`` from mixture component ``m``
    (chosen with probability ``weights[m]``): ``means[m] + chol[m] @ N(0, I)``.

    Attributes:
        mean: ``(D,)`` the latents' mean.
        components: ``(K, D)`` orthonormal PCA directions.
        weights: ``(M,)`` mixture weights (sum 1).
        means: ``(M, K)`` component means in PCA coordinates.
        chol: ``(M, K, K)`` lower Cholesky factors of the component covariances.
        n_samples: how many latents it was fitted on.
    """

    mean: np.ndarray
    components: np.ndarray
    weights: np.ndarray
    means: np.ndarray
    chol: np.ndarray
    n_samples: int

    @property
    def dim(self) -> int:
        """Length ``D`` of a latent."""
        return int(self.mean.shape[0])

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` latents ``(n, D)`` drawn with ``rng`` (same generator state → same draws).

        Raises:
            ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        which = rng.choice(len(self.weights), size=n, p=self.weights / self.weights.sum())
        noise = rng.standard_normal((n, self.means.shape[1]))
        coords = self.means[which] + np.einsum("nij,nj->ni", self.chol[which], noise)
        return self.mean + coords @ self.components

    def project(self, latents: np.ndarray) -> np.ndarray:
        """PCA coordinates ``(N, K)`` of latents ``(N, D)``."""
        return (np.asarray(latents, dtype=np.float64) - self.mean) @ self.components.T

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """Plain arrays (keys ``prefix + name``) for ``numpy.savez``."""
        return {
            prefix + "mean": self.mean,
            prefix + "components": self.components,
            prefix + "weights": self.weights,
            prefix + "means": self.means,
            prefix + "chol": self.chol,
            prefix + "n_samples": np.asarray(self.n_samples),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | np.lib.npyio.NpzFile, prefix: str) -> PcaGaussian:
        """The inverse of :meth:`to_arrays`."""
        return cls(
            mean=np.asarray(arrays[prefix + "mean"], dtype=np.float64),
            components=np.asarray(arrays[prefix + "components"], dtype=np.float64),
            weights=np.asarray(arrays[prefix + "weights"], dtype=np.float64),
            means=np.asarray(arrays[prefix + "means"], dtype=np.float64),
            chol=np.asarray(arrays[prefix + "chol"], dtype=np.float64),
            n_samples=int(arrays[prefix + "n_samples"]),
        )


def fit_pca_gaussian(
    latents: np.ndarray, n_components: int = 32, n_mixture: int = 1, seed: int = 0
) -> PcaGaussian:
    """Fit PCA to ``n_components`` (fewer when there are fewer latents) and a Gaussian mixture there.

    Args:
        latents: ``(N, D)`` flattened latents, ``N >= 2``.
        n_components: PCA directions kept; capped at ``min(N - 1, D)``.
        n_mixture: mixture components (1: one full-covariance Gaussian); capped at ``N``.
        seed: seed of the mixture's initialisation.

    Returns:
        The fitted :class:`PcaGaussian`.

    Raises:
        ValueError: fewer than 2 latents, not a 2-D finite array, or a count below 1.
    """
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    x = np.asarray(latents, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"latents must be a 2-D array (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"latents: need at least 2 latents to fit a Gaussian, got {x.shape[0]}")
    if not np.isfinite(x).all():
        raise ValueError("latents: contains NaN or infinite values")
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if n_mixture < 1:
        raise ValueError(f"n_mixture must be >= 1, got {n_mixture}")
    k = min(n_components, x.shape[0] - 1, x.shape[1])
    pca = PCA(n_components=k, svd_solver="full").fit(x)
    coords = pca.transform(x)
    gmm = GaussianMixture(
        n_components=min(n_mixture, x.shape[0]), covariance_type="full", reg_covar=1e-6, random_state=seed
    ).fit(coords)
    return PcaGaussian(
        mean=pca.mean_.astype(np.float64),
        components=pca.components_.astype(np.float64),
        weights=gmm.weights_.astype(np.float64),
        means=gmm.means_.astype(np.float64),
        chol=np.linalg.cholesky(gmm.covariances_).astype(np.float64),
        n_samples=int(x.shape[0]),
    )


def posterior_draws(
    mu: np.ndarray, logvar: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draws from the posteriors of randomly chosen rows: ``mu[i] + exp(logvar[i] / 2) * N(0, I)``.

    Args:
        mu: ``(N, D)`` posterior means.
        logvar: ``(N, D)`` posterior log-variances.
        n: draws.
        rng: the random generator.

    Returns:
        ``(draws (n, D), chosen row of each draw (n,))``.

    Raises:
        ValueError: shapes differ, no rows, or ``n`` negative.
    """
    mu = np.asarray(mu, dtype=np.float64)
    logvar = np.asarray(logvar, dtype=np.float64)
    if mu.ndim != 2 or mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must be (N, D) arrays of one shape, got {mu.shape} and {logvar.shape}"
        )
    if mu.shape[0] == 0:
        raise ValueError("mu: no posterior to draw from")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rows = rng.integers(0, mu.shape[0], size=n)
    noise = rng.standard_normal((n, mu.shape[1]))
    return mu[rows] + np.exp(0.5 * logvar[rows]) * noise, rows
