"""Subgroup metrics, gaps, ECE and the stratified bootstrap, checked against hand computations."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.subgroup_audit import (
    _bootstrap_rows,
    bootstrap_ci,
    encode_attribute,
    expected_calibration_error,
    subgroup_metrics,
)


def perfect_in_a_random_in_b(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    groups = np.where(np.arange(n) < n // 2, "A", "B")
    scores = np.where(groups == "A", 0.1 + 0.8 * labels, rng.uniform(0, 1, n))
    return labels, scores, groups


def test_perfect_group_vs_random_group():
    labels, scores, groups = perfect_in_a_random_in_b()
    report = subgroup_metrics(labels, scores, groups, attribute="site")
    table = report.per_group
    assert table.loc["A", "auc"] == 1.0 and table.loc["A", "accuracy"] == 1.0
    assert abs(table.loc["B", "auc"] - 0.5) < 0.1
    assert report.gaps["auc_gap"] > 0.35
    in_b = groups == "B"
    accuracy_b = np.mean((scores[in_b] >= 0.5) == labels[in_b])  # by hand
    assert report.worst_group == "B"
    assert report.gaps["worst_group_accuracy"] == pytest.approx(accuracy_b)
    assert report.gaps["accuracy_gap"] == pytest.approx(1.0 - accuracy_b)
    assert table.loc["B", "n"] == in_b.sum() and table.loc["B", "positives"] == labels[in_b].sum()
    assert report.overall["n"] == 400


def test_equalized_odds_on_eight_samples_by_hand():
    # group a: labels 1 1 0 0, predictions 1 0 1 0 -> TPR 1/2, FPR 1/2, selection 2/4
    # group b: labels 1 1 1 0, predictions 1 1 0 1 -> TPR 2/3, FPR 1,   selection 3/4
    # EOD = max(|1/2 - 2/3|, |1/2 - 1|) = 1/2; DPD = 3/4 - 2/4 = 1/4; both accuracies 1/2
    labels = [1, 1, 0, 0, 1, 1, 1, 0]
    predictions = np.array([1, 0, 1, 0, 1, 1, 0, 1])
    scores = np.where(predictions == 1, 0.8, 0.2)
    report = subgroup_metrics(labels, scores, list("aaaabbbb"))
    assert report.gaps["equalized_odds_difference"] == pytest.approx(0.5)
    assert report.gaps["demographic_parity_difference"] == pytest.approx(0.25)
    assert report.gaps["tpr_gap"] == pytest.approx(1 / 6)
    assert report.gaps["accuracy_gap"] == pytest.approx(0.0)
    assert report.per_group.loc["b", "fpr"] == 1.0 and report.per_group.loc["b", "specificity"] == 0.0


def test_ece_by_hand():
    # bins of score 0.25 (1 of 4 positive) and 0.75 (3 of 4 positive) are perfectly calibrated
    assert expected_calibration_error([1, 0, 0, 0, 1, 1, 1, 0], [0.25] * 4 + [0.75] * 4) == pytest.approx(0.0)
    assert expected_calibration_error([0, 1] * 10, [0.9] * 20) == pytest.approx(0.4)
    # two bins: |0 - 0.2| * 2/4 + |0.5 - 0.8| * 2/4 = 0.25
    assert expected_calibration_error([0, 0, 1, 0], [0.2, 0.2, 0.8, 0.8], bins=2) == pytest.approx(0.25)
    assert expected_calibration_error([1], [1.0]) == 0.0  # score 1.0 falls in the last bin
    with pytest.raises(ValueError, match="bins must be an int >= 1"):
        expected_calibration_error([1], [0.5], bins=0)
    with pytest.raises(ValueError, match=r"scores must be probabilities in \[0, 1\]"):
        expected_calibration_error([1], [1.5])
    with pytest.raises(ValueError, match="labels must be 0/1"):
        expected_calibration_error([2], [0.5])


def test_missing_attribute_values_are_left_out_and_one_group_is_refused():
    report = subgroup_metrics([0, 1, 0, 1, 1], [0.2, 0.9, 0.1, 0.7, 0.3], ["a", "a", "b", "b", None])
    assert report.n_missing == 1 and report.overall["n"] == 4
    coded = encode_attribute([3, -1, 10, float("nan"), 3])
    assert coded.categories == ("3", "10") and coded.valid.tolist() == [True, False, True, False, True]
    with pytest.raises(
        ValueError, match=r"site: .*at least two non-empty groups, got values \['a'\] \(1 missing\)"
    ):
        subgroup_metrics([0, 1, 1], [0.2, 0.9, 0.4], ["a", "a", -1], attribute="site")
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        subgroup_metrics([0, 1], [0.2, 0.9], ["a", "b"], threshold=2)


def test_undefined_metrics_are_nan_not_zero():
    # group b has no positives: its TPR and AUC are undefined (fairlearn alone would report TPR 0)
    report = subgroup_metrics([0, 1, 0, 1, 0, 0], [0.2, 0.9, 0.6, 0.3, 0.1, 0.7], list("aaaabb"))
    assert np.isnan(report.per_group.loc["b", "tpr"]) and np.isnan(report.per_group.loc["b", "auc"])
    assert np.isnan(report.gaps["tpr_gap"]) and np.isnan(report.gaps["equalized_odds_difference"])


def test_vectorised_bootstrap_metrics_match_sklearn_and_the_scalar_ece():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (5, 30))
    s = rng.integers(0, 5, (5, 30)) / 4  # ties
    rows = _bootstrap_rows(y, s, 0.5, 10, ["auc", "ece", "tpr"])
    for i in range(5):
        assert rows["auc"][i] == pytest.approx(roc_auc_score(y[i], s[i]))
        assert rows["ece"][i] == pytest.approx(expected_calibration_error(y[i], s[i]))
        assert rows["tpr"][i] == pytest.approx(((s[i] >= 0.5) & (y[i] == 1)).sum() / y[i].sum())


def test_bootstrap_ci_contains_the_estimate_and_narrows_with_n():
    widths = []
    for n in (200, 2000):
        rng = np.random.default_rng(n)
        labels = rng.integers(0, 2, n)
        scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, n), 0, 1)
        groups = rng.choice(["x", "y"], n)
        report = subgroup_metrics(labels, scores, groups)
        ci = bootstrap_ci(labels, scores, groups, ["auc", "tpr", "ece"], n_boot=200, seed=0)
        for group in ("x", "y"):
            for metric in ("auc", "tpr", "ece"):
                low, high = ci[group][metric]
                assert low <= report.per_group.loc[group, metric] <= high
        widths.append(ci["x"]["auc"][1] - ci["x"]["auc"][0])
    assert widths[1] < widths[0] / 2


def test_bootstrap_is_fast_and_reproducible():
    rng = np.random.default_rng(0)
    labels, scores, groups = rng.integers(0, 2, 500), rng.uniform(0, 1, 500), rng.choice(list("abcd"), 500)
    start = time.perf_counter()
    ci = bootstrap_ci(labels, scores, groups, ("auc", "accuracy", "tpr", "fpr", "specificity", "ece"))
    assert time.perf_counter() - start < 3.0
    assert set(ci) == set("abcd")
    assert ci == bootstrap_ci(labels, scores, groups, ("auc", "accuracy", "tpr", "fpr", "specificity", "ece"))
    with pytest.raises(ValueError, match="metrics must be a non-empty subset"):
        bootstrap_ci(labels, scores, groups, ["f1"])
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        bootstrap_ci(labels, scores, groups, ["auc"], alpha=1.0)
