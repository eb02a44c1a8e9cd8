"""Tests of ``evaluation/latent_sampling.py``: the PCA Gaussian and posterior draws."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.latent_sampling import PcaGaussian, fit_pca_gaussian, posterior_draws


def _low_rank(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents ``offset + N(0, diag(9, 4, 1)) @ basis`` in 20 dims: known mean and covariance."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(20, 3)))[0].T  # (3, 20) orthonormal rows
    offset = rng.normal(size=20)
    coords = rng.normal(size=(n, 3)) * np.array([3.0, 2.0, 1.0])
    cov = basis.T @ np.diag([9.0, 4.0, 1.0]) @ basis
    return offset + coords @ basis, offset, cov


def test_samples_match_the_generating_gaussian() -> None:
    latents, offset, cov = _low_rank(4000)
    model = fit_pca_gaussian(latents, n_components=3)
    draws = model.sample(20000, np.random.default_rng(1))
    np.testing.assert_allclose(draws.mean(axis=0), offset, atol=0.1)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), cov, atol=0.3)


def test_components_are_capped_and_same_rng_state_same_draws() -> None:
    latents, _, _ = _low_rank(5)
    model = fit_pca_gaussian(latents, n_components=32)
    assert model.components.shape == (4, 20)  # at most N - 1 directions
    a = model.sample(3, np.random.default_rng(7))
    np.testing.assert_array_equal(a, model.sample(3, np.random.default_rng(7)))
    assert model.sample(0, np.random.default_rng(0)).shape == (0, 20)


def test_mixture_round_trips_through_arrays() -> None:
    rng = np.random.default_rng(2)
    latents = np.concatenate([rng.normal(-5, 1, (100, 6)), rng.normal(5, 1, (100, 6))])
    model = fit_pca_gaussian(latents, n_components=2, n_mixture=2)
    np.testing.assert_allclose(np.sort(model.weights), [0.5, 0.5], atol=0.01)
    back = PcaGaussian.from_arrays(model.to_arrays("m_"), "m_")
    np.testing.assert_array_equal(
        back.sample(5, np.random.default_rng(0)), model.sample(5, np.random.default_rng(0))
    )
    # draws fall near one of the two clusters, not between them
    assert np.abs(model.sample(200, rng).mean(axis=1)).min() > 2


@pytest.mark.parametrize(
    ("latents", "kwargs", "message"),
    [
        (np.zeros((1, 4)), {}, r"need at least 2 latents to fit a Gaussian, got 1"),
        (np.zeros(4), {}, r"latents must be a 2-D array \(N, D\), got shape \(4,\)"),
        (np.full((3, 2), np.nan), {}, r"latents: contains NaN or infinite values"),
        (np.zeros((3, 2)), {"n_components": 0}, r"n_components must be >= 1, got 0"),
        (np.zeros((3, 2)), {"n_mixture": 0}, r"n_mixture must be >= 1, got 0"),
    ],
)
def test_fit_refuses_bad_input(latents, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        fit_pca_gaussian(latents, **kwargs)


def test_posterior_draws_centre_on_the_chosen_rows() -> None:
    mu = np.array([[0.0, 0.0], [10.0, -10.0]])
    logvar = np.log(np.array([[1.0, 1.0], [0.01, 0.01]]))
    draws, rows = posterior_draws(mu, logvar, 4000, np.random.default_rng(0))
    for r, sd in ((0, 1.0), (1, 0.1)):
        picked = draws[rows == r]
        assert 1800 < len(picked) < 2200
        np.testing.assert_allclose(picked.mean(axis=0), mu[r], atol=0.1)
        np.testing.assert_allclose(picked.std(axis=0), [sd, sd], rtol=0.1)
    with pytest.raises(ValueError, match=r"mu and logvar must be \(N, D\) arrays of one shape"):
        posterior_draws(mu, logvar[:1], 1, np.random.default_rng(0))
