"""Tests of ``evaluation/factor_fidelity.py``: hand-computed cases and a tiny detector on bright squares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.factor_fidelity import (
    calibrate_area_threshold,
    distribution_gap,
    factor_readback,
    lesion_fidelity,
    predicted_lesion_area,
    presence_fidelity,
    train_lesion_detector,
)


def _squares(n: int, seed: int, lesion: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """16×16 noisy grey images; with ``lesion`` a bright 4×4 square at a random place (its mask)."""
    rng = np.random.default_rng(seed)
    images = 0.3 + rng.normal(0, 0.03, (n, 1, 16, 16))
    masks = np.zeros((n, 1, 16, 16), bool)
    if lesion:
        for i in range(n):
            x, y = rng.integers(2, 10, 2)
            masks[i, 0, x : x + 4, y : y + 4] = True
        images[masks] = 0.9
    return torch.tensor(images.clip(0, 1), dtype=torch.float32), torch.tensor(masks)


@pytest.fixture(scope="module")
def detector() -> torch.nn.Module:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 72 tiny steps: a second thread only waits on the first
    try:
        pos, pos_m = _squares(24, 0, lesion=True)
        neg, neg_m = _squares(24, 1, lesion=False)
        return train_lesion_detector(torch.cat([pos, neg]), torch.cat([pos_m, neg_m]), epochs=8, batch_size=8)
    finally:
        torch.set_num_threads(threads)


def test_threshold_is_the_middle_of_the_best_range() -> None:
    # area > t separates the classes for every t in [1, 9): the middle, 5, is taken
    assert calibrate_area_threshold([0, 0, 1, 9, 12], [0, 0, 0, 1, 1]) == 5.0
    # a negative at 10: t in [0, 9) keeps every positive but calls it a lesion (balanced accuracy 3/4);
    # t in [10, 12) loses the positive at 9 and clears it (5/6, the best): the middle, 11
    assert calibrate_area_threshold([0, 10, 9, 12, 14], [0, 0, 1, 1, 1]) == 11.0


def test_threshold_needs_both_kinds_of_image() -> None:
    with pytest.raises(ValueError, match=r"present must hold images with and without a lesion .* got 2 of 2"):
        calibrate_area_threshold([3, 4], [1, 1])
    with pytest.raises(ValueError, match=r"same length, got 2 and 3"):
        calibrate_area_threshold([3, 4], [1, 0, 1])


def test_presence_fidelity_by_hand() -> None:
    out = presence_fidelity([True, True, False, True, False, False], [1, 1, 1, 0, 0, 2])
    assert out == {"lesion_present_share_class1": 2 / 3, "lesion_absent_share_class0": 0.5}
    assert np.isnan(presence_fidelity([True], [1])["lesion_absent_share_class0"])


def test_distribution_gap_same_disjoint_and_discrete() -> None:
    same = distribution_gap([1.0, 2.0, 3.0], [3.0, 1.0, 2.0])
    assert same["ks"] == 0.0 and same["wasserstein"] == 0.0
    apart = distribution_gap([0.0, 1.0], [10.0, 11.0])
    assert apart["ks"] == 1.0 and apart["wasserstein"] == 10.0 and apart["fake_mean"] == 10.5
    # frequencies {0: 3/4, 1: 1/4} vs {0: 1/4, 1: 1/2, 2: 1/4}: (1/2 + 1/4 + 1/4) / 2
    assert distribution_gap([0, 0, 0, 1], [0, 1, 1, 2], discrete=True) == {"tv": 0.5}
    with pytest.raises(ValueError, match="non-empty"):
        distribution_gap([], [1.0])


def test_detector_finds_the_squares_and_lesion_fidelity_reads_them_back(detector: torch.nn.Module) -> None:
    val_pos, val_pos_m = _squares(8, 2, lesion=True)
    val_neg, _ = _squares(8, 3, lesion=False)
    areas = predicted_lesion_area(detector, torch.cat([val_pos, val_neg]))
    assert np.median(areas[:8]) >= 8 and np.median(areas[8:]) <= 2  # a 4×4 square is 16 pixels
    threshold = calibrate_area_threshold(areas, [1] * 8 + [0] * 8)

    real_pos, _ = _squares(10, 4, lesion=True)
    real_neg, _ = _squares(10, 5, lesion=False)
    real = torch.cat([real_pos, real_neg])
    truth = np.array([1] * 10 + [0] * 10)
    # "synthetic" class-1 images: 6 with a square, 4 without; class-0: 5 without
    with_square, _ = _squares(6, 6, lesion=True)
    without, _ = _squares(9, 7, lesion=False)
    fake = torch.cat([with_square, without])
    fake_labels = np.array([1] * 10 + [0] * 5)
    out = lesion_fidelity(detector, threshold, real, truth, truth, fake, fake_labels)
    assert out["detector_balanced_accuracy"] == 1.0
    assert out["lesion_present_share_class1"] == 0.6 and out["lesion_absent_share_class0"] == 1.0
    assert out["lesion_area_fake_mean"] < out["lesion_area_real_mean"]  # four class-1 images hold none


def test_detector_rejects_bad_input() -> None:
    images, masks = _squares(2, 0, lesion=False)
    with pytest.raises(ValueError, match="no lesion pixel"):
        train_lesion_detector(images, masks)
    with pytest.raises(ValueError, match=r"masks must match images \(2, 1, 16, 16\)"):
        train_lesion_detector(images, masks[:1])
    with pytest.raises(ValueError, match=r"divisible by 4, got \(18, 18\)"):
        train_lesion_detector(torch.zeros(2, 1, 18, 18), torch.ones(2, 1, 18, 18))


def test_factor_readback_sees_a_shifted_factor_and_not_a_faithful_one() -> None:
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 90, 400)
    site = rng.integers(0, 3, 400)

    def features(
        age: np.ndarray, site: np.ndarray
    ) -> np.ndarray:  # the factors, linearly readable, plus noise
        onehot = np.eye(3)[site]
        return np.column_stack([age / 10, onehot * 3, rng.normal(size=(len(age), 4))])

    x = features(age, site)
    factors = np.column_stack([age, site])
    labels = np.zeros(400, int)
    names, continuous = ["age", "site"], [True, False]
    train, real = slice(0, 200), slice(200, 300)
    faithful = factor_readback(
        x[train],
        factors[train],
        names,
        continuous,
        x[real],
        factors[real],
        labels[real],
        x[300:],
        labels[300:],
    )
    assert faithful["factor_age_probe_r2"] > 0.95 and faithful["factor_site_probe_accuracy"] > 0.95
    assert faithful["factor_age_ks"] < 0.2 and faithful["factor_site_tv"] < 0.15
    # synthetic images all old and all of site 0
    shifted = features(np.full(100, 85.0) + rng.normal(0, 2, 100), np.zeros(100, int))
    off = factor_readback(
        x[train],
        factors[train],
        names,
        continuous,
        x[real],
        factors[real],
        labels[real],
        shifted,
        labels[300:],
    )
    assert off["factor_age_ks"] > 0.7 and off["factor_age_wasserstein"] > 20
    assert off["factor_site_tv"] > 0.55  # about 2/3 of the real images are of other sites
    with pytest.raises(ValueError, match=r"factors must be \(N, 2\)"):
        factor_readback(
            x[train], factors[train, :1], names, continuous, x[real], factors[real], labels[real], x, labels
        )
