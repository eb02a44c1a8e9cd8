"""Tests for evaluation/disentanglement.py: MIG, SAP, DCI on hand-built codes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.disentanglement import (
    dci,
    discretize,
    disentanglement_scores,
    factor_entropy,
    mig,
    mutual_info_matrix,
    sap,
)

LN2 = math.log(2.0)


def _perfect(n: int = 2000, n_noise: int = 2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three continuous uniform factors; codes = the factors followed by independent noise codes."""
    rng = np.random.default_rng(seed)
    factors = rng.uniform(-1.0, 1.0, size=(n, 3))
    return np.hstack([factors, rng.uniform(-1.0, 1.0, size=(n, n_noise))]), factors


def _mixed(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two independent symmetric factors; each code is an equal-weight mix of both."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1.0, 1.0, size=(n, 2))
    return np.stack([f[:, 0] + f[:, 1], f[:, 0] - f[:, 1]], axis=1), f


# --- discretisation, MI, entropy -----------------------------------------------------------


def test_discretize_equal_width_bins_per_column() -> None:
    # column 0 spans [0, 1]: edges 0, .5, 1 -> bins 1, 2, 2; column 1 spans [10, 30] on its own
    values = np.array([[0.0, 10.0], [0.5, 30.0], [1.0, 19.0]])
    assert discretize(values, bins=2).tolist() == [[1, 1], [2, 2], [2, 1]]
    assert np.unique(discretize(np.full((5, 1), 3.0), bins=20)).size == 1


@pytest.mark.parametrize("bins", [0, -3, 2.5, True])
def test_discretize_rejects_bad_bins(bins) -> None:
    with pytest.raises(ValueError, match=r"bins must be an integer >= 1"):
        discretize(np.zeros((4, 1)), bins=bins)


def test_mutual_info_matches_explicit_formula_on_four_samples() -> None:
    x = np.array([0, 0, 1, 1])
    y = np.array([0, 1, 1, 1])
    # I = sum_ab p(a,b) ln(p(a,b) / (p(a) p(b))) over the joint counts
    expected = 0.0
    for a in (0, 1):
        for b in (0, 1):
            p_ab = np.mean((x == a) & (y == b))
            if p_ab > 0:
                expected += p_ab * math.log(p_ab / (np.mean(x == a) * np.mean(y == b)))
    assert expected == pytest.approx(1.5 * LN2 - 0.75 * math.log(3.0))  # worked by hand
    m = mutual_info_matrix(x[:, None], np.stack([y, x], axis=1))
    assert m.shape == (1, 2)
    assert m[0, 0] == pytest.approx(expected)
    assert m[0, 1] == pytest.approx(LN2)


def test_factor_entropy_by_hand() -> None:
    f = np.array([[0, 0, 7], [0, 1, 7], [1, 2, 7], [1, 3, 7]])
    assert factor_entropy(f) == pytest.approx([LN2, math.log(4.0), 0.0])


def test_mutual_info_rejects_row_mismatch_naming_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"same N, got \(5, 2\) and \(4, 1\)"):
        mutual_info_matrix(np.zeros((5, 2)), np.zeros((4, 1)))


# --- MIG ------------------------------------------------------------------------------------


def test_mig_is_one_for_two_level_factors_copied_into_codes() -> None:
    f0 = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    f1 = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    # code 2 = f0 xor f1 is independent of each factor alone: MI = 0, so gap = ln2 / ln2
    codes = np.stack([f0, f1, f0 ^ f1], axis=1).astype(float)
    out = mig(codes, np.stack([f0, f1], axis=1))
    assert out["mig"] == pytest.approx(1.0)
    assert out["per_factor"] == pytest.approx([1.0, 1.0])


def test_mig_partial_second_code_matches_hand_value() -> None:
    f = np.array([[0], [0], [1], [1]])
    codes = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]])
    # gap = (ln2 - (1.5 ln2 - 0.75 ln3)) / ln2 = 0.75 log2(3) - 0.5
    assert mig(codes, f)["mig"] == pytest.approx(0.75 * math.log2(3.0) - 0.5)


def test_mig_near_one_for_continuous_factors_up_to_binning_bias() -> None:
    codes, factors = _perfect()
    out = mig(codes, factors)
    # top: I(z; v) = H(v_binned) ~ ln 20 exactly (same bins); second: a noise code whose plug-in MI
    # is the Miller-Madow bias (bins - 1)^2 / 2N nats, so MIG ~ 1 - 19^2 / (2 * 2000) / ln 20
    expected = 1.0 - 19**2 / (2 * 2000) / math.log(20.0)
    assert out["mig"] == pytest.approx(expected, abs=0.015)
    assert out["per_factor"] == pytest.approx([expected] * 3, abs=0.02)


def test_mig_near_zero_for_codes_mixing_every_factor() -> None:
    codes, factors = _mixed()
    assert mig(codes, factors)["mig"] < 0.05


def test_mig_excludes_zero_entropy_factor() -> None:
    codes, factors = _perfect(n=500)
    with_constant = np.hstack([factors, np.full((500, 1), 2.0)])
    out = mig(codes, with_constant)
    assert np.isnan(out["per_factor"][3])
    assert out["mig"] == pytest.approx(mig(codes, factors)["mig"])
    with pytest.raises(ValueError, match=r"every factor is constant"):
        mig(codes, np.ones((500, 2)))


@pytest.mark.parametrize(
    ("codes", "factors", "message"),
    [
        (
            np.zeros((10, 1)),
            np.zeros((10, 1)),
            r"mig needs >= 2 codes to form a gap, got codes shape \(10, 1\)",
        ),
        (np.zeros((1, 3)), np.zeros((1, 1)), r"codes needs N >= 2 rows"),
        (np.zeros(10), np.zeros((10, 1)), r"codes must be a 2-D array"),
        (np.full((4, 2), np.nan), np.zeros((4, 1)), r"codes must be finite; NaN/inf in column\(s\) \[0, 1\]"),
    ],
)
def test_mig_rejects_bad_input(codes, factors, message) -> None:
    with pytest.raises(ValueError, match=message):
        mig(codes, factors)


# --- SAP ------------------------------------------------------------------------------------


def test_sap_high_for_continuous_factors_copied_into_codes() -> None:
    codes, factors = _perfect(n=600)
    out = sap(codes, factors)
    assert out["score_matrix"].shape == (5, 3)
    assert np.diag(out["score_matrix"][:3]) == pytest.approx(1.0)  # R^2 of a code equal to the factor
    assert out["sap"] > 0.95


def test_sap_discrete_two_level_factor_gap_is_one_minus_chance() -> None:
    rng = np.random.default_rng(1)
    f = rng.integers(0, 2, size=(600, 1))
    codes = np.hstack([f.astype(float), rng.normal(size=(600, 2))])
    out = sap(codes, f)
    assert out["score_matrix"][0, 0] == pytest.approx(1.0)
    # second-best code is at chance (balanced accuracy 0.5) for a 2-level factor
    assert out["sap"] == pytest.approx(0.5, abs=0.1)


def test_sap_low_for_mixed_codes() -> None:
    codes, factors = _mixed(n=600)
    assert sap(codes, factors)["sap"] < 0.1


def test_sap_rejects_bad_continuous_flags_and_split() -> None:
    codes, factors = _perfect(n=50)
    with pytest.raises(ValueError, match=r"continuous_factors must have one flag per factor \(3\), got 2"):
        sap(codes, factors, continuous_factors=[True, False])
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\), got 1.5"):
        sap(codes, factors, test_fraction=1.5)


# --- DCI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator", ["lasso", "forest"])
def test_dci_near_one_for_factors_copied_into_codes(estimator: str) -> None:
    codes, factors = _perfect(n=600)
    out = dci(codes, factors, estimator=estimator)
    importance = out["importance"]
    assert importance.shape == (5, 3)
    assert np.argmax(importance, axis=0).tolist() == [0, 1, 2]
    assert out["disentanglement"] > 0.95
    assert out["completeness"] > 0.95
    assert out["informativeness"] > 0.9


def test_dci_disentanglement_low_when_codes_mix_factors() -> None:
    codes, factors = _mixed(n=600)
    out = dci(codes, factors)
    # f0 = (z0 + z1) / 2 and f1 = (z0 - z1) / 2: every code weighs both factors alike
    assert out["disentanglement"] < 0.1
    assert out["completeness"] < 0.1
    assert out["informativeness"] > 0.9


def test_dci_discrete_factor_uses_balanced_accuracy() -> None:
    rng = np.random.default_rng(2)
    f = rng.integers(0, 3, size=(300, 1))
    codes = np.hstack([f.astype(float), rng.normal(size=(300, 2))])
    out = dci(codes, f)
    assert out["informativeness"] == pytest.approx(1.0)
    assert out["importance"][0, 0] > 0.9


def test_dci_constant_factor_is_nan_and_left_out() -> None:
    codes, factors = _perfect(n=300)
    out = dci(codes, np.hstack([factors, np.zeros((300, 1))]))
    assert np.isnan(out["completeness_per_factor"][3]) and np.isnan(out["informativeness_per_factor"][3])
    assert out["importance"][:, 3].tolist() == [0.0] * 5
    assert out["disentanglement"] == pytest.approx(dci(codes, factors)["disentanglement"])


def test_dci_rejects_unknown_estimator() -> None:
    with pytest.raises(ValueError, match=r"estimator must be 'lasso' or 'forest', got 'gbt'"):
        dci(*_perfect(n=50), estimator="gbt")


def test_scores_do_not_depend_on_code_order() -> None:
    codes, factors = _perfect(n=600)
    order = [3, 1, 4, 0, 2]
    for fn in (mig, sap, dci):
        a, b = fn(codes, factors), fn(codes[:, order], factors)
        key = fn.__name__ if fn is not dci else "disentanglement"
        assert a[key] == pytest.approx(b[key], abs=1e-6)
    assert dci(codes[:, order], factors)["completeness"] == pytest.approx(dci(codes, factors)["completeness"])


def test_disentanglement_scores_flat_dict() -> None:
    codes, factors = _perfect(n=400)
    scores = disentanglement_scores(codes, factors, ["a", "b", "c"], [True, True, True])
    for key in (
        "mig",
        "sap",
        "dci_disentanglement",
        "dci_completeness",
        "dci_informativeness",
        "mig/a",
        "sap/c",
    ):
        assert isinstance(scores[key], float)
    with pytest.raises(ValueError, match=r"names must have one entry per factor column, got 2"):
        disentanglement_scores(codes, factors, ["a", "b"])
