"""Tests of evaluation/auc_interval.py against independent formulas and a simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from evaluation.auc_interval import auc_confidence_interval, auc_standard_error, auc_verdict


@pytest.mark.parametrize(("n_pos", "n_neg"), [(10, 30), (100, 100), (250, 37)])
def test_chance_standard_error_is_the_mann_whitney_null_variance(n_pos: int, n_neg: int) -> None:
    # under H0 (no ties) var(U / (n1 n2)) = (n1 + n2 + 1) / (12 n1 n2), derived independently
    expected = math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))
    assert auc_standard_error(0.5, n_pos, n_neg) == pytest.approx(expected, rel=1e-12)


def test_standard_error_matches_simulated_spread_of_a_good_classifier() -> None:
    rng = np.random.default_rng(0)
    n_pos, n_neg, shift = 40, 60, 1.5  # binormal scores, true AUC = Phi(1.5 / sqrt 2) ~ 0.856
    labels = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    aucs = [
        roc_auc_score(labels, np.r_[rng.normal(shift, 1, n_pos), rng.normal(0, 1, n_neg)])
        for _ in range(2000)
    ]
    se = auc_standard_error(float(np.mean(aucs)), n_pos, n_neg)
    assert se == pytest.approx(float(np.std(aucs)), rel=0.12)


def test_interval_is_centred_clipped_and_widens_with_level() -> None:
    low, high = auc_confidence_interval(0.7, 50, 50)
    assert low < 0.7 < high and (0.7 - low) == pytest.approx(high - 0.7)
    low99, high99 = auc_confidence_interval(0.7, 50, 50, level=0.99)
    assert low99 < low and high99 > high
    assert auc_confidence_interval(1.0, 5, 5)[1] == 1.0
    assert auc_confidence_interval(0.0, 5, 5)[0] == 0.0


def test_verdict_names_the_three_outcomes() -> None:
    assert auc_verdict(0.9, 100, 100).endswith("better than chance")
    assert "not distinguishable from chance" in auc_verdict(0.53, 100, 100)
    assert "worse than chance" in auc_verdict(0.2, 100, 100)
    assert "100 positives / 100 negatives" in auc_verdict(0.9, 100, 100)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.2, 10, 10), r"auc must be in \[0, 1\], got 1.2"),
        ((0.5, 0, 10), r"n_pos must be an int >= 1, got 0"),
        ((0.5, 10, 2.5), r"n_neg must be an int >= 1, got 2.5"),
    ],
)
def test_bad_arguments_are_named(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        auc_standard_error(*args)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\), got 1.0"):
        auc_confidence_interval(0.5, 10, 10, level=1.0)
