"""Tests of evaluation/generation_metrics.py: closed forms, hand-computed cases, MONAI references, and toy generators.

"Real" images are phantom-like blobs (one to three Gaussian spots on a dark background) with
features = 4×4 average-pooled pixels; the generators under test copy training images, return
uniform noise, or draw fresh blobs (an honest generator).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import MMDMetric, MultiScaleSSIMMetric, SSIMMetric

from evaluation.generation_metrics import (
    MS_SSIM_WEIGHTS,
    MS_SSIM_WINDOW,
    diversity_ms_ssim,
    fid,
    fid_floor,
    memorisation,
    mmd,
    pairwise_ssim,
    prdc,
    quality_metrics,
    real_vs_synthetic_auc,
)


def blobs(n: int, seed: int, size: int = 32) -> np.ndarray:
    """``(n, 1, size, size)`` images in [0, 1]: 1–3 Gaussian spots of random place, width and brightness."""
    rng = np.random.default_rng(seed)
    grid = np.arange(size)
    images = np.full((n, size, size), 0.05)
    for count in (1, 2, 3):
        chosen = rng.random(n) < (1.0 if count == 1 else 0.5)
        centre = rng.uniform(0.2 * size, 0.8 * size, (n, 2))
        width = rng.uniform(0.06 * size, 0.15 * size, n)
        bright = rng.uniform(0.3, 0.8, n)
        spot = np.exp(
            -(
                (grid[None, :, None] - centre[:, 0, None, None]) ** 2
                + (grid[None, None, :] - centre[:, 1, None, None]) ** 2
            )
            / (2 * width[:, None, None] ** 2)
        )
        images += chosen[:, None, None] * bright[:, None, None] * spot
    return np.clip(images, 0.0, 1.0)[:, None]


def pooled(images: np.ndarray) -> np.ndarray:
    """Features: 4×4 average pooling, flattened (64 numbers for a 32×32 image)."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h // 4, 4, w // 4, 4).mean(axis=(3, 5)).reshape(n, -1)


def whitened(n: int, dims: int, seed: int) -> np.ndarray:
    """Samples whose *sample* mean is exactly 0 and sample covariance exactly the identity."""
    x = np.random.default_rng(seed).normal(size=(n, dims))
    x -= x.mean(axis=0)
    chol = np.linalg.cholesky(np.cov(x, rowvar=False))
    return x @ np.linalg.inv(chol).T


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray]:
    images = blobs(300, seed=1)
    return images, pooled(images)


# --------------------------------------------------------------------------- FID


@pytest.mark.parametrize("make", [np.asarray, torch.as_tensor])
def test_fid_of_a_set_with_itself_is_zero(make) -> None:
    feats = np.random.default_rng(0).normal(size=(200, 6))
    assert fid(make(feats), make(feats)) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(
    ("shift", "variances"),
    [([3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]), ([1.0, -2.0, 0.5, 0.0], [4.0, 1.0, 0.25, 9.0])],
)
def test_fid_matches_the_closed_form_for_gaussians(shift: list[float], variances: list[float]) -> None:
    # N(0, I) vs N(m, diag(v)): FID = |m|² + Σ (1 + v − 2√v) = |m|² + Σ (1 − √v)²,
    # exact here because the samples' own means and covariances are those values.
    real = whitened(500, 4, seed=0)
    fake = whitened(400, 4, seed=1) * np.sqrt(variances) + shift
    expected = float(np.sum(np.square(shift)) + np.sum((1 - np.sqrt(variances)) ** 2))
    assert fid(real, fake) == pytest.approx(expected, rel=1e-6)


def test_fid_floor_is_the_fid_of_two_halves_and_small_for_one_distribution() -> None:
    feats = np.random.default_rng(0).normal(size=(1000, 4))
    floor = fid_floor(feats, seed=3)
    order = np.random.default_rng(3).permutation(1000)
    assert floor == pytest.approx(fid(feats[order[:500]], feats[order[500:]]))
    assert 0 < floor < 0.1
    assert fid(feats, feats + 1.0) > 30 * floor  # |shift|² = 4


# --------------------------------------------------------------------------- MMD


def test_mmd_is_the_unbiased_gaussian_kernel_estimator() -> None:
    rng = np.random.default_rng(0)
    x, y, h = rng.normal(size=(7, 3)), rng.normal(size=(5, 3)) + 0.5, 1.3

    def k(a, b):
        return np.exp(-np.sum((a - b) ** 2) / (2 * h * h))

    xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(a, b) for a in x for b in y) / (7 * 5)
    assert mmd(x, y, bandwidth=h) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_mmd_sees_a_wrong_spread_that_monai_linear_mmd_misses() -> None:
    rng = np.random.default_rng(0)
    real, same, narrow = rng.normal(size=(400, 4)), rng.normal(size=(400, 4)), 0.2 * rng.normal(size=(400, 4))
    linear = float(MMDMetric()(torch.as_tensor(real), torch.as_tensor(narrow)))  # |mean difference|²
    assert abs(linear) < 0.05
    assert abs(mmd(real, same)) < 0.01
    assert mmd(real, narrow) > 0.2


# --------------------------------------------------------------------------- PRDC


def test_prdc_by_hand_in_one_dimension() -> None:
    # k = 1: every real ball has radius 1; fake balls radius 9.5 (the two fakes are 9.5 apart).
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    assert prdc(real, fake, k=1) == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


def test_prdc_identical_and_disjoint_distributions() -> None:
    rng = np.random.default_rng(0)
    real, same = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
    m = prdc(real, same, k=5)
    assert m["precision"] > 0.85 and m["recall"] > 0.85 and m["coverage"] > 0.9
    assert m["density"] == pytest.approx(1.0, abs=0.15)
    assert prdc(real, same + 50.0, k=5) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


# --------------------------------------------------------------------------- diversity and SSIM


@pytest.mark.parametrize("size", [32, 64])
def test_diversity_identical_images_score_one_different_images_lower(size: int) -> None:
    images = blobs(8, seed=0, size=size)
    assert diversity_ms_ssim(np.repeat(images[:1], 5, axis=0)) == pytest.approx(1.0, abs=1e-5)
    blob_value = diversity_ms_ssim(images)
    noise_value = diversity_ms_ssim(np.random.default_rng(0).random((8, 1, size, size)))
    assert noise_value < blob_value < 0.99


def test_diversity_over_all_pairs_is_monai_ms_ssim_mean() -> None:
    images = torch.as_tensor(blobs(6, seed=2, size=32), dtype=torch.float32)
    i, j = np.triu_indices(6, k=1)  # 15 pairs ≤ pairs: every pair is used
    metric = MultiScaleSSIMMetric(
        spatial_dims=2, kernel_size=MS_SSIM_WINDOW, kernel_sigma=1.5 * 7 / 11, weights=MS_SSIM_WEIGHTS
    )
    expected = float(metric(images[i], images[j]).mean())
    assert diversity_ms_ssim(images, pairs=100) == pytest.approx(expected, rel=1e-6)


def test_diversity_runs_on_volumes() -> None:
    volumes = np.random.default_rng(0).random((3, 1, 28, 30, 28))
    assert 0.0 <= diversity_ms_ssim(volumes) < 0.5


@pytest.mark.parametrize("shape", [(5, 2, 24, 20), (3, 1, 14, 12, 16)])
def test_pairwise_ssim_matches_monai_ssim_metric(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    a = torch.as_tensor(rng.random(shape), dtype=torch.float32)
    b = (0.7 * a + 0.3 * torch.as_tensor(rng.random(shape), dtype=torch.float32)).clamp(0, 1)
    ia, ib = np.arange(shape[0]), np.arange(shape[0])[::-1].copy()
    expected = SSIMMetric(spatial_dims=len(shape) - 2, reduction="none")(a[ia], b[ib]).reshape(-1).numpy()
    np.testing.assert_allclose(pairwise_ssim(a, b, ia, ib), expected, atol=1e-5)


# --------------------------------------------------------------------------- memorisation


def test_a_copying_generator_is_flagged(real) -> None:
    images, feats = real
    picked = np.random.default_rng(0).choice(len(images), 40, replace=False)
    m = memorisation(images, feats, images[picked], feats[picked])
    assert m["share_closer_than_real_pairs_feature"] == 1.0
    assert m["share_closer_than_real_pairs_ssim"] == 1.0
    assert m["flagged"] is True
    assert m["p_value_feature"] < 1e-10
    np.testing.assert_array_equal(m["nearest_index_feature"], picked)
    np.testing.assert_array_equal(m["nearest_index_ssim"], picked)
    np.testing.assert_allclose(m["nearest_ssim"], 1.0, atol=1e-5)
    assert m["nearest_distance_feature"].max() < 1e-6  # 0 up to rounding
    assert 0 < m["real_pair_distance_feature"] and m["real_pair_ssim"] < 1 - 1e-3


def test_a_noise_generator_is_not_a_copier(real) -> None:
    images, feats = real
    noise = np.random.default_rng(0).random((40, 1, 32, 32))
    m = memorisation(images, feats, noise, pooled(noise))
    assert m["share_closer_than_real_pairs_feature"] == 0.0 and m["share_closer_than_real_pairs_ssim"] == 0.0
    assert m["flagged"] is False and m["p_value_feature"] == 1.0


def test_an_honest_generator_beats_the_closest_pair_only_by_chance(real) -> None:
    images, feats = real
    fresh = blobs(300, seed=7)
    m = memorisation(images, feats, fresh, pooled(fresh))
    assert m["expected_share_if_independent"] == pytest.approx(2 / 301)
    assert m["share_closer_than_real_pairs_feature"] < 0.03
    assert m["p_value_feature"] > 0.01 and m["p_value_ssim"] > 0.01
    assert m["flagged"] is False  # by chance only: not flagged


def test_memorisation_shortlist_covering_the_set_is_an_exact_ssim_search() -> None:
    train, fake = blobs(15, seed=3), blobs(6, seed=4)
    m = memorisation(train, pooled(train), fake, pooled(fake), shortlist=15)
    metric = SSIMMetric(spatial_dims=2, reduction="none")
    ta, fa = torch.as_tensor(train, dtype=torch.float32), torch.as_tensor(fake, dtype=torch.float32)
    i, j = np.meshgrid(np.arange(6), np.arange(15), indexing="ij")
    brute = (
        metric(fa[i.ravel()], ta[j.ravel()]).reshape(6, 15).numpy()
    )  # every fake against every train image
    np.testing.assert_array_equal(m["nearest_index_ssim"], brute.argmax(axis=1))
    np.testing.assert_allclose(m["nearest_ssim"], brute.max(axis=1), atol=1e-5)
    i, j = np.triu_indices(15, k=1)  # every pair of different training images
    pairs = metric(ta[i], ta[j]).numpy()
    assert m["real_pair_ssim"] == pytest.approx(pairs.max(), abs=1e-5)


# --------------------------------------------------------------------------- detectability and the report


def test_auc_is_half_for_one_distribution_and_one_for_two() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 8))
    assert real_vs_synthetic_auc(real, rng.normal(size=(300, 8))) == pytest.approx(0.5, abs=0.08)
    assert real_vs_synthetic_auc(real, rng.normal(size=(300, 8)) + 1.5) > 0.97


def test_a_noise_generator_fails_fid_precision_and_auc(real) -> None:
    images, feats = real
    noise = np.random.default_rng(0).random((150, 1, 32, 32))
    m = quality_metrics(images, feats, noise, pooled(noise), pairs=50)
    assert m["fid"] > 20 * m["fid_floor"]
    assert m["mmd"] > 20 * abs(m["mmd_floor"])
    assert m["precision"] == 0.0 and m["coverage"] == 0.0
    assert m["auc_real_vs_fake"] > 0.99
    assert m["memorisation_flagged"] is False


def test_quality_metrics_of_an_honest_and_a_copying_generator(real) -> None:
    images, feats = real
    fresh = blobs(150, seed=9)
    honest = quality_metrics(images, feats, fresh, pooled(fresh), pairs=50)
    assert all(isinstance(v, (int, float, bool)) for v in honest.values())
    assert honest["fid"] < 3 * honest["fid_floor"]
    assert honest["precision"] > 0.7 and honest["auc_real_vs_fake"] < 0.7
    assert honest["ms_ssim_fake"] == pytest.approx(honest["ms_ssim_real"], abs=0.1)
    copies = quality_metrics(
        images[200:],
        feats[200:],
        images[:100],
        feats[:100],
        train_images=images,
        train_features=feats,
        pairs=20,
    )
    assert copies["memorisation_flagged"] is True and copies["memorisation_share_feature"] == 1.0


# --------------------------------------------------------------------------- refused inputs


FEATS = np.random.default_rng(0).normal(size=(20, 4))
IMAGES = np.random.default_rng(0).random((20, 1, 32, 32))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fid(FEATS[:, 0], FEATS), r"real_features must be a 2-D array \(N, F\).*got shape \(20,\)"),
        (lambda: fid(FEATS, FEATS[:1]), r"fake_features must hold at least 2 samples, got 1"),
        (lambda: fid(FEATS, np.where(FEATS > 1, np.nan, FEATS)), r"fake_features holds NaN"),
        (lambda: fid(FEATS, FEATS[:, :3]), r"same feature size, got 4 and 3"),
        (lambda: fid_floor(FEATS[:3]), r"real_features must hold at least 4 samples, got 3"),
        (lambda: mmd(FEATS, FEATS, bandwidth=-1.0), r"bandwidth must be > 0, got -1.0"),
        (lambda: prdc(FEATS, FEATS, k=0), r"k must be an integer >= 1, got 0"),
        (lambda: prdc(FEATS, FEATS[:5], k=5), r"fake_features must hold at least 6 samples, got 5"),
        (
            lambda: diversity_ms_ssim(IMAGES[:, 0]),
            r"images must be \(N, C, H, W\) or \(N, C, H, W, D\), got shape \(20, 32, 32\)",
        ),
        (lambda: diversity_ms_ssim(IMAGES * 2), r"images must lie in \[0, 1\], got values in \[0.*, 2\]"),
        (
            lambda: diversity_ms_ssim(IMAGES[:, :, :16, :16]),
            r"at least 28 voxels on every spatial side.*\(16, 16\)",
        ),
        (lambda: diversity_ms_ssim(IMAGES[:1]), r"images must hold at least 2 images, got 1"),
        (lambda: diversity_ms_ssim(IMAGES, pairs=0), r"pairs must be an integer >= 1, got 0"),
        (
            lambda: memorisation(IMAGES, FEATS[:10], IMAGES, FEATS),
            r"train_images and train_features must describe the same samples, got 20 images and 10",
        ),
        (
            lambda: memorisation(IMAGES, FEATS, IMAGES[:, :, :20], FEATS),
            r"train_images and fake_images must hold images of one shape",
        ),
        (
            lambda: memorisation(IMAGES, FEATS, IMAGES, FEATS, alpha=1.0),
            r"alpha must be in \(0, 1\), got 1.0",
        ),
        (
            lambda: real_vs_synthetic_auc(FEATS, FEATS[:3]),
            r"fake_features must hold at least 5 samples, got 3",
        ),
        (
            lambda: quality_metrics(IMAGES, FEATS, IMAGES, FEATS, train_images=IMAGES),
            r"train_images and train_features must be given together",
        ),
        (
            lambda: quality_metrics(IMAGES, FEATS, IMAGES[:, :, :20, :20], FEATS),
            r"fake_images must be at least 28 voxels on every spatial side",
        ),
        (
            lambda: quality_metrics(IMAGES, FEATS[:19], IMAGES, FEATS),
            r"real_images and real_features must describe the same samples",
        ),
    ],
)
def test_bad_inputs_are_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
