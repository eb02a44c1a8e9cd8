"""Leakage probe, attribute direction, logit reliance, permutation test and Holm correction."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.latent_leakage import (
    attribute_direction,
    holm_correction,
    logit_reliance,
    permutation_test,
    probe_auc,
    probe_statistic,
    reliance_statistic,
)


def leaky_latents(n: int = 300, dim: int = 8, leak_dim: int = 5, strength: float = 1.0, seed: int = 0):
    """``mu`` with independent N(0, 1) dims; ``leak_dim`` is shifted by ``strength`` * attribute."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 2, n)
    mu = rng.normal(size=(n, dim))
    mu[:, leak_dim] += strength * groups
    return mu, groups


def test_probe_finds_a_dim_equal_to_the_attribute():
    rng = np.random.default_rng(0)
    groups = rng.choice(["F", "M"], 200)
    mu = rng.normal(size=(200, 6))
    mu[:, 4] = (groups == "M") + 0.05 * rng.normal(size=200)
    result = probe_auc(mu, groups)
    assert result.auc > 0.99 and len(result.fold_aucs) == 5
    assert result.top_dims(1) == [4]
    assert result.per_dim_weight.sum() == pytest.approx(1.0) and result.per_dim_weight[4] > 0.5
    assert result.categories == ("F", "M") and result.n == 200


def test_probe_is_at_chance_for_an_independent_attribute_and_handles_three_categories():
    rng = np.random.default_rng(1)
    mu = rng.normal(size=(300, 6))
    assert abs(probe_auc(mu, rng.integers(0, 2, 300)).auc - 0.5) < 0.08
    sites = rng.integers(0, 3, 300)
    mu[:, 2] += 2.0 * sites
    result = probe_auc(mu, np.array(["s1", "s2", "s3"])[sites])
    assert result.auc > 0.85 and result.top_dims(1) == [2]


def test_probe_rejects_too_small_categories_and_single_values():
    mu = np.zeros((10, 2))
    with pytest.raises(ValueError, match=r"needs >= folds=5 samples, got counts \{'a': 8, 'b': 2\}"):
        probe_auc(mu + np.arange(10)[:, None], ["a"] * 8 + ["b"] * 2)
    with pytest.raises(ValueError, match=r"at least 2 attribute values, got \['a'\]"):
        probe_auc(mu, ["a"] * 9 + [None])


def test_attribute_direction_is_the_unit_mean_difference():
    mu, groups = leaky_latents(n=2000, strength=3.0)
    direction = attribute_direction(mu, groups)
    assert np.linalg.norm(direction) == pytest.approx(1.0)
    assert abs(direction[5]) > 0.99 and direction[5] > 0  # from category "0" to "1"
    with pytest.raises(ValueError, match=r"binary attribute, got values \['0', '1', '2'\]"):
        attribute_direction(mu[:3], [0, 1, 2])


def test_logit_reliance_by_hand():
    # w = (2, 0, 1), d = e0: |cos| = 2 / sqrt(5). Centred mu along e0: (-1, 1, -3, 3) around mean 1,
    # so delta logit = -2 * that = (2, -2, 6, -6), mean |delta| = 4.
    # logit difference w . mu = 2 * mu0 + mu2 = (0, 4, -4, 8) + (1, 1, 1, 1); its std = sqrt(20).
    mu = np.array([[0.0, 9.0, 1.0], [2.0, 9.0, 1.0], [-2.0, 9.0, 1.0], [4.0, 9.0, 1.0]])
    result = logit_reliance(np.array([2.0, 0.0, 1.0]), mu, np.array([3.0, 0.0, 0.0]))
    assert result["abs_cos"] == pytest.approx(2 / np.sqrt(5))
    assert result["weight_along_direction"] == pytest.approx(2.0)
    assert result["mean_abs_delta_logit"] == pytest.approx(4.0)
    assert result["delta_logit_fraction_of_std"] == pytest.approx(4.0 / np.sqrt(20))
    two_logit_head = np.array([[0.0, 1.0, 0.0], [2.0, 1.0, 1.0]])  # W[1] - W[0] = (2, 0, 1)
    assert logit_reliance(two_logit_head, mu, [1.0, 0.0, 0.0]) == pytest.approx(result)
    with pytest.raises(ValueError, match=r"binary head, got shape \(3, 3\)"):
        logit_reliance(np.eye(3), mu, [1.0, 0.0, 0.0])


def test_permutation_p_value_formula():
    mu, groups = np.zeros((20, 1)), np.arange(20) % 2
    assert permutation_test(lambda m, g: 0.0, mu, groups, n_perm=9)[1] == 1.0  # every perm ties
    original = groups.copy()
    only_original = lambda m, g: float(np.array_equal(g, original))  # noqa: E731
    assert permutation_test(only_original, mu, groups, n_perm=49) == (1.0, 1 / 50)
    with pytest.raises(ValueError, match="n_perm must be an int >= 1"):
        permutation_test(only_original, mu, groups, n_perm=0)


def test_leakage_permutation_test_separates_signal_from_noise():
    mu, groups = leaky_latents(strength=1.0)
    observed, p = permutation_test(probe_statistic(), mu, groups, n_perm=200, seed=0)
    assert observed > 0.7 and p < 0.01
    independent = np.random.default_rng(7).integers(0, 2, len(groups))
    assert permutation_test(probe_statistic(), mu, independent, n_perm=200, seed=0)[1] > 0.05


def test_logistic_and_multi_fold_probe_statistics_agree_with_the_fast_one():
    mu, groups = leaky_latents(strength=1.5)
    fast = probe_statistic()(mu, groups)
    assert probe_statistic(model="logistic")(mu, groups) == pytest.approx(fast, abs=0.03)
    assert probe_statistic(folds=3)(mu, groups) == pytest.approx(probe_auc(mu, groups).auc, abs=0.05)
    with pytest.raises(ValueError, match="model must be 'least_squares' or 'logistic'"):
        probe_statistic(model="svm")


def test_reliance_permutation_test_needs_the_head_to_read_the_attribute_direction():
    mu, groups = leaky_latents(strength=1.0)
    reads_attribute = np.zeros(8)
    reads_attribute[[0, 5]] = 1.0
    _, p = permutation_test(reliance_statistic(reads_attribute), mu, groups, n_perm=200)
    assert p < 0.01
    ignores_attribute = np.zeros(8)
    ignores_attribute[[0, 1]] = 1.0
    assert permutation_test(reliance_statistic(ignores_attribute), mu, groups, n_perm=200)[1] > 0.05


def _reversed_marker_latents(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents of a test set whose marker disagrees with the label in 90 % of images."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    marker = np.where(rng.random(n) < 0.9, 1 - labels, labels)
    mu = rng.normal(0.0, 0.3, (n, 4))
    mu[:, 0] += 3.0 * labels  # the lesion
    mu[:, 1] += 2.0 * marker  # the marker
    return mu, marker, labels


def test_reliance_within_labels_finds_a_marker_that_opposes_the_label():
    mu, marker, labels = _reversed_marker_latents()
    reads_marker = np.array([1.0, 1.0, 0.0, 0.0])
    # pooled over labels, the marker's shift cancels part of the label's: no evidence at all
    _, p_pooled = permutation_test(reliance_statistic(reads_marker), mu, marker, n_perm=200, strata=labels)
    assert p_pooled > 0.5
    observed, p_within = permutation_test(
        reliance_statistic(reads_marker, strata=labels), mu, marker, n_perm=200, strata=labels
    )
    assert p_within < 0.01
    # within each label the marker groups' logits differ by about 2: mean |offset| = 2 * 2 * 0.9 * 0.1
    assert observed == pytest.approx(0.36, abs=0.08)
    lesion_only = np.array([1.0, 0.0, 0.0, 0.0])
    assert (
        permutation_test(
            reliance_statistic(lesion_only, strata=labels), mu, marker, n_perm=200, strata=labels
        )[1]
        > 0.05
    )


def test_reliance_statistic_by_hand_within_strata_and_a_wrong_strata_length():
    mu = np.array([[0.0], [2.0], [4.0], [10.0], [10.0], [13.0]])
    groups = ["a", "b", "b", "a", "b", "b"]
    # stratum 0: a 0, b 3, mean 2 -> |0-2|, |3-2| x2 ; stratum 1: a 10, b 11.5, mean 11 -> 1, .5, .5
    stat = reliance_statistic([1.0], strata=[0, 0, 0, 1, 1, 1])
    assert stat(mu, groups) == pytest.approx((2 + 1 + 1 + 1 + 0.5 + 0.5) / 6)
    with pytest.raises(ValueError, match="strata must have one value per row of mu"):
        reliance_statistic([1.0], strata=[0, 1])(mu, groups)


def test_holm_by_hand():
    # sorted: d .005*4 = .02; a .01*3 = .03; c .03*2 = .06; b max(.06, .04*1) = .06
    adjusted = holm_correction({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005})
    assert list(adjusted) == ["a", "b", "c", "d"]
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02})
    assert holm_correction({"x": 0.6, "y": 0.7}) == pytest.approx({"x": 1.0, "y": 1.0})
    assert holm_correction({}) == {}
    with pytest.raises(ValueError, match=r"p_values\['b'\] must be in \[0, 1\], got nan"):
        holm_correction({"a": 0.1, "b": float("nan")})


def test_stratified_permutation_separates_confounding_from_direct_effect():
    rng = np.random.default_rng(5)
    n = 300
    label = rng.integers(0, 2, n)
    attr = np.where(rng.random(n) < 0.9, label, 1 - label)  # agrees with the label 90 % of the time
    via_label = (label + 0.3 * rng.standard_normal(n))[:, None]  # depends on the label only
    direct = (attr + 0.3 * rng.standard_normal(n))[:, None]  # depends on the attribute itself

    def stat(m, g):
        return float(abs(np.corrcoef(m[:, 0], g)[0, 1]))

    assert permutation_test(stat, via_label, attr, n_perm=99, seed=1)[1] <= 0.01  # confounded
    assert permutation_test(stat, via_label, attr, n_perm=99, seed=1, strata=label)[1] > 0.05
    assert permutation_test(stat, direct, attr, n_perm=99, seed=1, strata=label)[1] <= 0.01
    with pytest.raises(ValueError, match="strata must have one value per sample"):
        permutation_test(stat, direct, attr, n_perm=9, strata=label[:-1])
