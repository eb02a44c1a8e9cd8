"""Honest quality of a *set* of synthetic images: distance with its floor, fidelity, diversity, memorisation.

A generator is judged against real images on five questions, each a plain function over arrays:

* **how far are the distributions** — :func:`fid` (MONAI ``FIDMetric``) printed beside
  :func:`fid_floor`, the FID between two random halves of the real set (what sampling noise alone
  gives), and :func:`mmd`, a Gaussian-kernel MMD that also sees a wrong spread or shape;
* **fidelity and coverage** — :func:`prdc`: precision, recall, density and coverage on k-NN
  manifolds (Naeem et al. 2020, "Reliable fidelity and diversity metrics for generative models");
* **diversity** — :func:`diversity_ms_ssim`: mean MS-SSIM over random pairs within one set
  (1 = all images alike; compare with the real set's value);
* **memorisation** — :func:`memorisation`: is a synthetic image closer to a training image than
  any two training images are to each other (feature space and SSIM);
* **detectability** — :func:`real_vs_synthetic_auc`: cross-validated logistic-regression AUC
  (0.5 = a linear probe cannot tell them apart).

:func:`quality_metrics` computes all of them into one flat dict. Images are ``(N, C, H, W[, D])``
in [0, 1]; features are ``(N, F)`` from the project's own encoder, supplied by the caller — nothing
here computes features or downloads a network. Numpy arrays and torch tensors are accepted.

Written by hand, and why:

* the MMD estimator — MONAI's ``MMDMetric`` accepts ``(N, F)`` but its kernel is the plain inner
  product, so its MMD² is the squared distance between the two *means* (a set with the right mean
  and the wrong spread, e.g. a collapsed generator, scores ≈ 0; the tests show it) and it needs
  equal set sizes; the same unbiased estimator (Gretton et al. 2012, eq. 3) is applied here with a
  Gaussian kernel;
* PRDC — no maintained library in the stack does it; 30 lines over scikit-learn's
  ``NearestNeighbors`` and pairwise distances;
* SSIM for memorisation — MONAI's ``SSIMMetric`` is the reference, but on CPU it costs ~3 ms per
  64×64 pair (five 11×11 2-D convolutions per pair), i.e. a minute for 20,000 pairs. Here the same
  window (Gaussian, side 11, sigma 1.5, valid positions) is applied as separable band-matrix
  products, the per-image means and variances once per image and only the cross term per pair
  (~0.15 ms per pair); the tests check it against ``SSIMMetric`` to 1e-5.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(200, 4))
    >>> round(fid(real, real), 6)
    0.0
    >>> fid(real, real + 3.0) > 10 * fid_floor(real)
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.metrics import FIDMetric, MultiScaleSSIMMetric
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from evaluation.synthesis_metrics import DEFAULT_SSIM_WINDOW, SSIM_SIGMA

__all__ = [
    "MS_SSIM_WEIGHTS",
    "MS_SSIM_WINDOW",
    "MS_SSIM_MIN_SIDE",
    "fid",
    "fid_floor",
    "mmd",
    "prdc",
    "diversity_ms_ssim",
    "pairwise_ssim",
    "memorisation",
    "real_vs_synthetic_auc",
    "quality_metrics",
]

MS_SSIM_WEIGHTS = (0.0711, 0.4530, 0.4760)
"""MS-SSIM scale weights: Wang et al.'s first three (0.0448, 0.2856, 0.3001) renormalised to sum 1.

Three scales, not MONAI's five: five scales with an 11-voxel window need images of at least
176 voxels a side (MONAI's check), three with a 7-voxel window work from 28 (so 32 and 64 do)."""

MS_SSIM_WINDOW = 7
"""MS-SSIM Gaussian window side; its sigma is scaled down with it, 1.5 × 7 / 11."""

MS_SSIM_MIN_SIDE = 28
"""Smallest spatial side MONAI's MS-SSIM accepts with 3 scales and a 7-voxel window (side // 4 > 6)."""

_RANGE_TOLERANCE = 1e-6
_CHUNK = 1000


# --------------------------------------------------------------------------- input checks


def _as_numpy(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().double().numpy()
    return np.asarray(array, dtype=np.float64)


def _features(array: Any, name: str, min_samples: int = 2) -> np.ndarray:
    """``array`` as float64 ``(N, F)``, finite, with at least ``min_samples`` rows."""
    arr = _as_numpy(array)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(
            f"{name} must be a 2-D array (N, F) of feature vectors, got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] < min_samples:
        raise ValueError(f"{name} must hold at least {min_samples} samples, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values ({int((~np.isfinite(arr)).sum())} entries)")
    return arr


def _feature_pair(real: Any, fake: Any, min_samples: int = 2) -> tuple[np.ndarray, np.ndarray]:
    r = _features(real, "real_features", min_samples)
    f = _features(fake, "fake_features", min_samples)
    if r.shape[1] != f.shape[1]:
        raise ValueError(
            f"real_features and fake_features must have the same feature size, got {r.shape[1]} and {f.shape[1]}"
        )
    return r, f


def _images(array: Any, name: str, min_samples: int = 1, min_side: int = 1) -> torch.Tensor:
    """``array`` as float32 torch ``(N, C, *spatial)`` with 2 or 3 spatial dims, finite, in [0, 1]."""
    if isinstance(array, torch.Tensor):
        img = array.detach().cpu().float()
    else:
        img = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if img.ndim not in (4, 5):
        raise ValueError(f"{name} must be (N, C, H, W) or (N, C, H, W, D), got shape {tuple(img.shape)}")
    if img.shape[0] < min_samples:
        raise ValueError(f"{name} must hold at least {min_samples} images, got {img.shape[0]}")
    if min(img.shape[2:]) < min_side:
        raise ValueError(
            f"{name} must be at least {min_side} voxels on every spatial side, got spatial shape {tuple(img.shape[2:])}"
        )
    if not torch.isfinite(img).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    lo, hi = float(img.min()), float(img.max())
    if lo < -_RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return img


def _matching(images: torch.Tensor, features: np.ndarray, image_name: str, feature_name: str) -> None:
    if images.shape[0] != features.shape[0]:
        raise ValueError(
            f"{image_name} and {feature_name} must describe the same samples, got {images.shape[0]} images "
            f"and {features.shape[0]} feature vectors"
        )


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- distribution distance


def fid(real_features: Any, fake_features: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (MONAI ``FIDMetric``).

    FID grows with sampling noise at small N (and is ill-conditioned when N < F), so print it beside
    :func:`fid_floor`: a synthetic FID near the floor is as close as this many real images get.

    Args:
        real_features: ``(N, F)`` features of real images.
        fake_features: ``(M, F)`` features of synthetic images.

    Returns:
        The FID (≥ 0; a rounding-level negative value is returned as 0).

    Raises:
        ValueError: not ``(N, F)``, fewer than 2 samples, NaN/inf, or different ``F``.

    Example:
        >>> import numpy as np
        >>> a = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
        >>> round(fid(a, a + [3.0, 4.0]), 6)  # same covariance: |mean shift|² = 25
        25.0
    """
    real, fake = _feature_pair(real_features, fake_features)
    value = FIDMetric()(torch.from_numpy(fake), torch.from_numpy(real))
    return max(float(value), 0.0)


def fid_floor(real_features: Any, seed: int = 0) -> float:
    """FID between two random halves of the real set: the FID that sampling noise alone gives.

    Each half holds ``N // 2`` samples, fewer than the synthetic comparison uses, so the floor is
    slightly pessimistic (FID's bias shrinks as N grows).

    Args:
        real_features: ``(N, F)`` features of real images, N ≥ 4.
        seed: seed of the random split.

    Returns:
        The FID between the halves.

    Raises:
        ValueError: not ``(N, F)``, fewer than 4 samples, or NaN/inf.

    Example:
        >>> import numpy as np
        >>> feats = np.random.default_rng(0).normal(size=(400, 3))
        >>> 0 < fid_floor(feats) < 0.2
        True
    """
    real = _features(real_features, "real_features", min_samples=4)
    order = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    return fid(real[order[:half]], real[order[half : 2 * half]])


def mmd(real_features: Any, fake_features: Any, bandwidth: float | None = None) -> float:
    """Unbiased squared MMD with a Gaussian kernel (Gretton et al. 2012, eq. 3).

    ``k(x, y) = exp(-|x - y|² / (2 bandwidth²))``. MONAI's ``MMDMetric`` runs the same estimator with
    the inner product as kernel, which only compares the two means (see the module docstring).

    Args:
        real_features: ``(N, F)`` features of real images.
        fake_features: ``(M, F)`` features of synthetic images.
        bandwidth: kernel width; ``None`` takes the median distance between pooled samples (the
            median heuristic; at most 2000 pooled samples, drawn with a fixed seed).

    Returns:
        MMD²; unbiased, so it scatters around 0 (slightly negative values included) when the two
        sets come from one distribution.

    Raises:
        ValueError: bad feature arrays (see :func:`fid`) or a non-positive ``bandwidth``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> a, b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
        >>> abs(mmd(a, b)) < 0.01, mmd(a, 3 * b) > 0.1  # same mean, three times the spread
        (True, True)
    """
    real, fake = _feature_pair(real_features, fake_features)
    x, y = torch.from_numpy(real), torch.from_numpy(fake)
    if bandwidth is None:
        pooled = torch.cat([x, y])
        if len(pooled) > 2000:
            pooled = pooled[
                torch.from_numpy(np.random.default_rng(0).choice(len(pooled), 2000, replace=False))
            ]
        dist = torch.cdist(pooled, pooled)
        off_diagonal = dist[~torch.eye(len(pooled), dtype=torch.bool)]
        bandwidth = float(off_diagonal.median()) or 1.0
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth!r}")
    gamma = 1.0 / (2.0 * bandwidth**2)

    def mean_kernel(a: torch.Tensor, b: torch.Tensor, same: bool) -> float:
        k = torch.exp(-gamma * torch.cdist(a, b).square())
        if same:
            n = len(a)
            return float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))
        return float(k.mean())

    return mean_kernel(x, x, True) + mean_kernel(y, y, True) - 2.0 * mean_kernel(x, y, False)


# --------------------------------------------------------------------------- fidelity and coverage


def prdc(real_features: Any, fake_features: Any, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage on k-NN manifolds (Naeem et al. 2020).

    Each real sample gets a ball reaching its k-th nearest real neighbour (likewise for fakes).
    Precision: share of fakes inside some real ball. Recall: share of reals inside some fake ball.
    Density: real balls containing a fake, counted per fake and divided by k (≈ 1 for a matching
    distribution; above 1 when fakes crowd the dense regions). Coverage: share of real balls that
    contain at least one fake.

    Args:
        real_features: ``(N, F)`` features of real images, N > k.
        fake_features: ``(M, F)`` features of synthetic images, M > k.
        k: neighbourhood size.

    Returns:
        ``{"precision", "recall", "density", "coverage"}``.

    Raises:
        ValueError: bad feature arrays, ``k`` < 1, or no more than ``k`` samples in a set.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(300, 2))
        >>> prdc(real, real + 100.0)["precision"], prdc(real, real)["coverage"]
        (0.0, 1.0)
    """
    k = _positive_int(k, "k")
    real, fake = _feature_pair(real_features, fake_features, min_samples=k + 1)
    # kneighbors() without X leaves each point out of its own neighbours: the k-th is column k - 1.
    real_radius = NearestNeighbors(n_neighbors=k).fit(real).kneighbors()[0][:, k - 1]
    fake_radius = NearestNeighbors(n_neighbors=k).fit(fake).kneighbors()[0][:, k - 1]
    in_real_balls = np.zeros(len(fake), dtype=np.int64)  # per fake: real balls that contain it
    real_in_fake_ball = np.zeros(len(real), dtype=bool)
    nearest_fake = np.full(len(real), np.inf)
    for start in range(0, len(fake), _CHUNK):
        part = slice(start, start + _CHUNK)
        dist = pairwise_distances(real, fake[part])  # (N, chunk)
        in_real_balls[part] = (dist <= real_radius[:, None]).sum(axis=0)
        real_in_fake_ball |= (dist <= fake_radius[None, part]).any(axis=1)
        nearest_fake = np.minimum(nearest_fake, dist.min(axis=1))
    return {
        "precision": float((in_real_balls > 0).mean()),
        "recall": float(real_in_fake_ball.mean()),
        "density": float(in_real_balls.sum() / (k * len(fake))),
        "coverage": float((nearest_fake <= real_radius).mean()),
    }


# --------------------------------------------------------------------------- diversity


def _random_pairs(n: int, pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` random unordered pairs of distinct indices, or every pair when there are no more."""
    if n * (n - 1) // 2 <= pairs:
        i, j = np.triu_indices(n, k=1)
        return i, j
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, size=pairs)
    j = (i + rng.integers(1, n, size=pairs)) % n
    return i, j


def diversity_ms_ssim(images: Any, pairs: int = 500, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of distinct images of one set (MONAI ``MultiScaleSSIMMetric``).

    High = the images look alike (1 for identical images); compare a synthetic set's value with the
    real set's. Three scales (weights :data:`MS_SSIM_WEIGHTS`), Gaussian window
    :data:`MS_SSIM_WINDOW` with sigma 1.5 × 7 / 11, data range 1: it runs on images of at least
    :data:`MS_SSIM_MIN_SIDE` voxels a side (32×32 and 64×64 included).

    Args:
        images: ``(N, C, H, W[, D])`` in [0, 1], N ≥ 2.
        pairs: number of random pairs (all pairs when N(N−1)/2 is no more).
        seed: seed of the pair draw.

    Returns:
        The mean MS-SSIM over the pairs.

    Raises:
        ValueError: bad image array, fewer than 2 images, a side under 28, or ``pairs`` < 1.

    Example:
        >>> import numpy as np
        >>> img = np.random.default_rng(0).random((1, 1, 32, 32))
        >>> round(diversity_ms_ssim(np.repeat(img, 3, axis=0)), 4)
        1.0
    """
    pairs = _positive_int(pairs, "pairs")
    img = _images(images, "images", min_samples=2, min_side=MS_SSIM_MIN_SIDE)
    i, j = _random_pairs(len(img), pairs, seed)
    metric = MultiScaleSSIMMetric(
        spatial_dims=img.ndim - 2,
        data_range=1.0,
        kernel_size=MS_SSIM_WINDOW,
        kernel_sigma=SSIM_SIGMA * MS_SSIM_WINDOW / DEFAULT_SSIM_WINDOW,
        weights=MS_SSIM_WEIGHTS,
        reduction="none",
    )
    values = [
        metric(img[torch.from_numpy(i[s : s + _CHUNK])], img[torch.from_numpy(j[s : s + _CHUNK])]).reshape(-1)
        for s in range(0, len(i), _CHUNK)
    ]
    return float(torch.cat(values).mean())


# --------------------------------------------------------------------------- memorisation


def _band_matrix(length: int, window: int, sigma: float) -> torch.Tensor:
    """``(length - window + 1, length)``: row r holds the normalised Gaussian at columns r .. r + window - 1."""
    offsets = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    rows = length - window + 1
    band = torch.zeros(rows, length)
    index = torch.arange(rows)[:, None] + torch.arange(window)[None, :]
    band.scatter_(1, index, kernel.expand(rows, window).contiguous())
    return band


def _blur(x: torch.Tensor, bands: list[torch.Tensor]) -> torch.Tensor:
    """Separable Gaussian filter (valid positions) over the spatial axes of ``(N, C, *spatial)``."""
    for axis, band in enumerate(bands, start=2):
        if axis == x.ndim - 1:
            x = x @ band.T
        elif axis == x.ndim - 2:
            x = band @ x
        else:
            x = torch.movedim(torch.movedim(x, axis, -1) @ band.T, -1, axis)
    return x


def pairwise_ssim(a: Any, b: Any, index_a: Any, index_b: Any) -> np.ndarray:
    """SSIM of ``a[index_a[p]]`` with ``b[index_b[p]]`` for every p: MONAI ``SSIMMetric``'s numbers, faster.

    Same definition as ``SSIMMetric(spatial_dims, data_range=1)`` (Gaussian window 11, sigma 1.5,
    k1 0.01, k2 0.03, valid positions, mean over channels and positions), computed with separable
    band matrices and per-image statistics shared across pairs.

    Args:
        a: ``(N, C, *spatial)`` images in [0, 1], every side ≥ 11.
        b: ``(M, C, *spatial)`` images of the same shape per image.
        index_a: ``(P,)`` indices into ``a``.
        index_b: ``(P,)`` indices into ``b``.

    Returns:
        ``(P,)`` SSIM values.

    Raises:
        ValueError: bad image arrays, different image shapes, or index arrays of different lengths.

    Example:
        >>> import numpy as np
        >>> imgs = np.random.default_rng(0).random((3, 1, 16, 16))
        >>> ssim = pairwise_ssim(imgs, imgs, [0, 1], [0, 2])
        >>> ssim.shape, round(float(ssim[0]), 4), bool(ssim[1] < 0.5)
        ((2,), 1.0, True)
    """
    x = _images(a, "a", min_side=DEFAULT_SSIM_WINDOW)
    y = _images(b, "b", min_side=DEFAULT_SSIM_WINDOW)
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"a and b must hold images of one shape, got {tuple(x.shape[1:])} and {tuple(y.shape[1:])}"
        )
    ia = torch.as_tensor(np.asarray(index_a, dtype=np.int64)).reshape(-1)
    ib = torch.as_tensor(np.asarray(index_b, dtype=np.int64)).reshape(-1)
    if len(ia) != len(ib):
        raise ValueError(f"index_a and index_b must have the same length, got {len(ia)} and {len(ib)}")
    bands = [_band_matrix(side, DEFAULT_SSIM_WINDOW, SSIM_SIGMA) for side in x.shape[2:]]
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = _blur(x, bands), _blur(y, bands)
    var_x, var_y = _blur(x * x, bands) - mu_x.square(), _blur(y * y, bands) - mu_y.square()
    out = []
    for s in range(0, len(ia), 2 * _CHUNK):
        i, j = ia[s : s + 2 * _CHUNK], ib[s : s + 2 * _CHUNK]
        mx, my = mu_x[i], mu_y[j]
        cov = _blur(x[i] * y[j], bands) - mx * my
        ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / (
            (mx.square() + my.square() + c1) * (var_x[i] + var_y[j] + c2)
        )
        out.append(ssim.flatten(1).mean(1))
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def _best_ssim(
    query: torch.Tensor, pool: torch.Tensor, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the candidate (column of ``candidates``) with the highest SSIM, and that SSIM."""
    rows = np.repeat(np.arange(len(query)), candidates.shape[1])
    ssim = pairwise_ssim(query, pool, rows, candidates.reshape(-1)).reshape(candidates.shape)
    best = ssim.argmax(axis=1)
    return candidates[np.arange(len(query)), best], ssim[np.arange(len(query)), best]


def memorisation(
    train_images: Any,
    train_features: Any,
    fake_images: Any,
    fake_features: Any,
    shortlist: int = 10,
    alpha: float = 0.01,
) -> dict[str, Any]:
    """Synthetic images closer to a training image than any two training images are to each other.

    For each synthetic image: its nearest training image in feature space (Euclidean) and by SSIM
    (:func:`pairwise_ssim`). The SSIM search looks at the ``shortlist`` feature-nearest training
    images only (exact when ``shortlist`` ≥ the training set size). The reference is the closest
    pair of *different* training images (leave-one-out nearest neighbour, searched the same way).

    A copy of a training image is closer than that pair (share 1.0 for a copying generator). But
    an honest generator is not always at 0: for a synthetic image drawn independently from the
    training distribution, the chance of beating the closest training pair is 2 / (N_train + 1)
    (the closest pair among N + 1 exchangeable points contains the new one with that chance), so
    with as many synthetic as training images "any image closer" would fire in most honest runs
    (1 − e⁻² ≈ 86 % for M = N). So ``flagged`` tests the count: ``p_value_*`` is the binomial tail
    of the observed count under that null, and the generator is flagged when either is below
    ``alpha``. Read ``share_*`` against ``expected_share_if_independent``.

    Args:
        train_images: ``(N, C, *spatial)`` training images in [0, 1], N ≥ 2, every side ≥ 11.
        train_features: ``(N, F)`` their features.
        fake_images: ``(M, C, *spatial)`` synthetic images, same image shape.
        fake_features: ``(M, F)`` their features.
        shortlist: feature-nearest candidates whose SSIM is computed.
        alpha: ``flagged`` when a p-value is below it.

    Returns:
        Per synthetic image: ``nearest_index_feature``, ``nearest_distance_feature``,
        ``nearest_index_ssim``, ``nearest_ssim`` (arrays of length M). Scalars:
        ``real_pair_distance_feature`` (closest training pair), ``real_pair_ssim`` (highest SSIM
        between two training images), ``share_closer_than_real_pairs_feature`` and ``..._ssim``,
        ``expected_share_if_independent``, ``p_value_feature``, ``p_value_ssim``, ``flagged``.

    Raises:
        ValueError: bad arrays, image/feature counts that differ, different image shapes,
            ``shortlist`` < 1 or ``alpha`` outside (0, 1).

    Example:
        >>> import numpy as np
        >>> imgs = np.random.default_rng(0).random((20, 1, 16, 16))
        >>> feats = imgs.reshape(20, -1)
        >>> m = memorisation(imgs, feats, imgs[:5], feats[:5])
        >>> m["share_closer_than_real_pairs_ssim"], m["flagged"], m["nearest_index_ssim"].tolist()
        (1.0, True, [0, 1, 2, 3, 4])
    """
    shortlist = _positive_int(shortlist, "shortlist")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    train_img = _images(train_images, "train_images", min_samples=2, min_side=DEFAULT_SSIM_WINDOW)
    fake_img = _images(fake_images, "fake_images", min_samples=1, min_side=DEFAULT_SSIM_WINDOW)
    train_feat = _features(train_features, "train_features", min_samples=2)
    fake_feat = _features(fake_features, "fake_features", min_samples=1)
    _matching(train_img, train_feat, "train_images", "train_features")
    _matching(fake_img, fake_feat, "fake_images", "fake_features")
    if train_feat.shape[1] != fake_feat.shape[1]:
        raise ValueError(
            f"train_features and fake_features must have the same feature size, got {train_feat.shape[1]} "
            f"and {fake_feat.shape[1]}"
        )
    if train_img.shape[1:] != fake_img.shape[1:]:
        raise ValueError(
            f"train_images and fake_images must hold images of one shape, got {tuple(train_img.shape[1:])} "
            f"and {tuple(fake_img.shape[1:])}"
        )
    n_train = len(train_feat)
    index = NearestNeighbors(n_neighbors=min(shortlist, n_train - 1)).fit(train_feat)
    real_dist, real_candidates = index.kneighbors()  # leave-one-out: a point is not its own neighbour
    fake_dist, fake_candidates = index.kneighbors(fake_feat, n_neighbors=min(shortlist, n_train))

    _, real_ssim = _best_ssim(train_img, train_img, real_candidates)
    fake_ssim_index, fake_ssim = _best_ssim(fake_img, train_img, fake_candidates)
    real_pair_distance = float(real_dist[:, 0].min())
    real_pair_ssim = float(real_ssim.max())
    closer_feature = fake_dist[:, 0] < real_pair_distance
    closer_ssim = fake_ssim > real_pair_ssim
    expected = 2.0 / (n_train + 1)
    share_feature, share_ssim = float(closer_feature.mean()), float(closer_ssim.mean())
    p_feature = float(stats.binom.sf(closer_feature.sum() - 1, len(fake_feat), expected))
    p_ssim = float(stats.binom.sf(closer_ssim.sum() - 1, len(fake_feat), expected))
    return {
        "nearest_index_feature": fake_candidates[:, 0],
        "nearest_distance_feature": fake_dist[:, 0],
        "nearest_index_ssim": fake_ssim_index,
        "nearest_ssim": fake_ssim,
        "real_pair_distance_feature": real_pair_distance,
        "real_pair_ssim": real_pair_ssim,
        "share_closer_than_real_pairs_feature": share_feature,
        "share_closer_than_real_pairs_ssim": share_ssim,
        "expected_share_if_independent": expected,
        "p_value_feature": p_feature,
        "p_value_ssim": p_ssim,
        "flagged": bool(min(p_feature, p_ssim) < alpha),
    }


# --------------------------------------------------------------------------- detectability


def real_vs_synthetic_auc(real_features: Any, fake_features: Any, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated ROC AUC of a logistic regression telling real from synthetic features.

    0.5 = a linear probe on these features cannot tell them apart (a non-linear difference may
    remain); 1 = perfectly separable. Standardised features, L2-regularised logistic regression
    (C = 1), stratified ``folds``-fold split; the mean AUC over the folds.

    Args:
        real_features: ``(N, F)`` features of real images, N ≥ ``folds``.
        fake_features: ``(M, F)`` features of synthetic images, M ≥ ``folds``.
        seed: seed of the fold split.
        folds: number of folds (≥ 2).

    Returns:
        The mean held-out AUC.

    Raises:
        ValueError: bad feature arrays, ``folds`` < 2, or fewer samples than folds in a set.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real = rng.normal(size=(100, 3))
        >>> real_vs_synthetic_auc(real, real + 5.0)
        1.0
    """
    folds = _positive_int(folds, "folds", minimum=2)
    real, fake = _feature_pair(real_features, fake_features, min_samples=folds)
    x = np.concatenate([real, fake])
    y = np.concatenate([np.zeros(len(real)), np.ones(len(fake))])
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(probe, x, y, cv=split, scoring="roc_auc").mean())


# --------------------------------------------------------------------------- everything at once


def quality_metrics(
    real_images: Any,
    real_features: Any,
    fake_images: Any,
    fake_features: Any,
    train_images: Any | None = None,
    train_features: Any | None = None,
    k: int = 5,
    pairs: int = 500,
    shortlist: int = 10,
    seed: int = 0,
) -> dict[str, float | int | bool]:
    """Every metric of this module for one synthetic set, as one flat dict of numbers.

    Args:
        real_images: ``(N, C, *spatial)`` real images in [0, 1] (held-out or training).
        real_features: ``(N, F)`` their features.
        fake_images: ``(M, C, *spatial)`` synthetic images in [0, 1].
        fake_features: ``(M, F)`` their features.
        train_images: the generator's training images for :func:`memorisation`; default the real set.
        train_features: their features (given together with ``train_images``).
        k: neighbourhood size of :func:`prdc`.
        pairs: pairs per set for :func:`diversity_ms_ssim`.
        shortlist: SSIM candidates per image in :func:`memorisation`.
        seed: seed of every random draw.

    Returns:
        ``n_real``, ``n_fake``, ``fid``, ``fid_floor``, ``mmd``, ``mmd_floor`` (MMD between the real
        halves of :func:`fid_floor`), ``precision``, ``recall``, ``density``, ``coverage``,
        ``ms_ssim_real``, ``ms_ssim_fake``, ``auc_real_vs_fake``, and from :func:`memorisation`
        ``memorisation_`` + ``real_pair_distance_feature``, ``real_pair_ssim``,
        ``min_distance_feature``, ``max_ssim``, ``share_feature``, ``share_ssim``,
        ``expected_share_if_independent``, ``p_value_feature``, ``p_value_ssim``, ``flagged``.

    Raises:
        ValueError: any input the individual metrics refuse, counts of images and features that
            differ, or only one of ``train_images``/``train_features``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> real, fake = rng.random((40, 1, 32, 32)), rng.random((40, 1, 32, 32))
        >>> m = quality_metrics(real, real.reshape(40, -1)[:, :8], fake, fake.reshape(40, -1)[:, :8], pairs=20)
        >>> sorted(m)[:4], m["n_fake"]
        (['auc_real_vs_fake', 'coverage', 'density', 'fid'], 40)
    """
    if (train_images is None) != (train_features is None):
        raise ValueError(
            "train_images and train_features must be given together (or neither, to use the real set)"
        )
    real_img = _images(real_images, "real_images", min_samples=4, min_side=MS_SSIM_MIN_SIDE)
    fake_img = _images(fake_images, "fake_images", min_samples=2, min_side=MS_SSIM_MIN_SIDE)
    real_feat, fake_feat = _feature_pair(real_features, fake_features, min_samples=2)
    _matching(real_img, real_feat, "real_images", "real_features")
    _matching(fake_img, fake_feat, "fake_images", "fake_features")
    if train_images is None:
        train_images, train_features = real_img, real_feat

    order = np.random.default_rng(seed).permutation(len(real_feat))
    half = len(real_feat) // 2
    metrics: dict[str, float | int | bool] = {
        "n_real": len(real_feat),
        "n_fake": len(fake_feat),
        "fid": fid(real_feat, fake_feat),
        "fid_floor": fid_floor(real_feat, seed=seed),
        "mmd": mmd(real_feat, fake_feat),
        "mmd_floor": mmd(real_feat[order[:half]], real_feat[order[half : 2 * half]]),
    }
    metrics.update(prdc(real_feat, fake_feat, k=k))
    metrics["ms_ssim_real"] = diversity_ms_ssim(real_img, pairs=pairs, seed=seed)
    metrics["ms_ssim_fake"] = diversity_ms_ssim(fake_img, pairs=pairs, seed=seed)
    metrics["auc_real_vs_fake"] = real_vs_synthetic_auc(real_feat, fake_feat, seed=seed)
    memo = memorisation(train_images, train_features, fake_img, fake_feat, shortlist=shortlist)
    metrics.update(
        {
            "memorisation_real_pair_distance_feature": memo["real_pair_distance_feature"],
            "memorisation_real_pair_ssim": memo["real_pair_ssim"],
            "memorisation_min_distance_feature": float(memo["nearest_distance_feature"].min()),
            "memorisation_max_ssim": float(memo["nearest_ssim"].max()),
            "memorisation_share_feature": memo["share_closer_than_real_pairs_feature"],
            "memorisation_share_ssim": memo["share_closer_than_real_pairs_ssim"],
            "memorisation_expected_share_if_independent": memo["expected_share_if_independent"],
            "memorisation_p_value_feature": memo["p_value_feature"],
            "memorisation_p_value_ssim": memo["p_value_ssim"],
            "memorisation_flagged": memo["flagged"],
        }
    )
    return metrics
