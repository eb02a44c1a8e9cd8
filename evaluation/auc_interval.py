"""Confidence interval of a ROC AUC from its value and the class counts (Hanley & McNeil 1982).

Used where only the AUC and the label counts are at hand (the demo's summary reads the
training run's ``metrics.json``, not per-image scores), to say whether a test AUC is
distinguishable from chance. Neither scikit-learn nor scipy provides this interval; the
closed form is three lines, so it is written here (the bias audit, which has the per-image
scores, bootstraps instead).

Example:
    >>> low, high = auc_confidence_interval(0.5, 100, 100)
    >>> round(low, 3), round(high, 3)
    (0.42, 0.58)
"""

from __future__ import annotations

import math

from scipy.stats import norm

__all__ = ["auc_standard_error", "auc_confidence_interval", "auc_verdict"]


def _check(auc: float, n_pos: int, n_neg: int) -> None:
    if not 0.0 <= auc <= 1.0:
        raise ValueError(f"auc must be in [0, 1], got {auc!r}")
    for name, value in (("n_pos", n_pos), ("n_neg", n_neg)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def auc_standard_error(auc: float, n_pos: int, n_neg: int) -> float:
    """Hanley–McNeil standard error of an AUC.

    Args:
        auc: the measured AUC, in [0, 1].
        n_pos: number of positive cases (>= 1).
        n_neg: number of negative cases (>= 1).

    Returns:
        The standard error.

    Raises:
        ValueError: ``auc`` outside [0, 1] or a count below 1.
    """
    _check(auc, n_pos, n_neg)
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    variance = (auc * (1.0 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (
        n_pos * n_neg
    )
    return math.sqrt(max(variance, 0.0))


def auc_confidence_interval(auc: float, n_pos: int, n_neg: int, level: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval ``auc ± z * SE``, clipped to [0, 1].

    Args:
        auc: the measured AUC.
        n_pos: number of positive cases.
        n_neg: number of negative cases.
        level: coverage, in (0, 1).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: bad ``auc``, counts or ``level``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    se = auc_standard_error(auc, n_pos, n_neg)
    z = float(norm.ppf(0.5 + level / 2.0))
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def auc_verdict(auc: float, n_pos: int, n_neg: int, level: float = 0.95) -> str:
    """One sentence a user can read: the AUC, its interval, and whether it beats chance.

    Args:
        auc: the measured AUC.
        n_pos: number of positive cases.
        n_neg: number of negative cases.
        level: coverage of the interval.

    Returns:
        E.g. ``"test AUC 0.478 (95% CI 0.43-0.53, 250 positives / 250 negatives): not
        distinguishable from chance (0.5)"``.
    """
    low, high = auc_confidence_interval(auc, n_pos, n_neg, level)
    head = f"AUC {auc:.3f} ({level:.0%} CI {low:.2f}-{high:.2f}, {n_pos} positives / {n_neg} negatives)"
    if low > 0.5:
        return f"{head}: better than chance"
    if high < 0.5:
        return f"{head}: worse than chance (labels or scores inverted?)"
    return f"{head}: not distinguishable from chance (0.5)"
