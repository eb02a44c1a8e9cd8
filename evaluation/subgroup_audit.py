"""Per-subgroup classification metrics, the gaps between subgroups, and bootstrap intervals.

Inputs are arrays already extracted from a model: ``labels`` (0/1), ``scores`` (the
positive-class probability) and one attribute code per sample (``groups``: strings or
ints; ``None``, NaN, ``-1`` and ``""`` mean *missing* and the sample is left out).
Point estimates go through fairlearn's :class:`~fairlearn.metrics.MetricFrame` and its
disparity metrics; only the expected calibration error and the stratified bootstrap
are written here (see their docstrings for why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    true_positive_rate,
)
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

__all__ = [
    "AttributeCodes",
    "BOOTSTRAP_METRICS",
    "SubgroupReport",
    "bootstrap_ci",
    "encode_attribute",
    "expected_calibration_error",
    "subgroup_metrics",
]

BOOTSTRAP_METRICS = ("auc", "accuracy", "tpr", "fpr", "specificity", "ece")
"""Metric names :func:`bootstrap_ci` understands (the per-group columns of :class:`SubgroupReport`)."""

_MISSING_STRINGS = ("", "-1", "none", "nan")


@dataclass(frozen=True)
class AttributeCodes:
    """An attribute column split into a validity mask, integer codes and category names.

    Attributes:
        valid: ``(N,)`` bool, False where the attribute is missing.
        codes: ``(n_valid,)`` int codes of the valid samples, indexing ``categories``.
        categories: the sorted category names (as strings).
    """

    valid: np.ndarray
    codes: np.ndarray
    categories: tuple[str, ...]


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _MISSING_STRINGS
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return bool(value == -1 or (isinstance(value, (float, np.floating)) and math.isnan(value)))
    return False


def encode_attribute(groups: Sequence[object] | np.ndarray, name: str = "groups") -> AttributeCodes:
    """Drop missing attribute values and code the rest ``0..K-1`` in sorted order.

    Args:
        groups: ``(N,)`` attribute values; ``None``, NaN, ``-1``, ``"-1"`` and ``""`` are missing.
        name: the argument name used in error messages.

    Returns:
        The :class:`AttributeCodes`.

    Raises:
        ValueError: if ``groups`` is not one-dimensional.

    Example:
        >>> encode_attribute(["b", "a", None, "b"]).categories
        ('a', 'b')
    """
    values = np.asarray(groups, dtype=object)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (N,), got shape {values.shape}")
    valid = np.array([not _is_missing(v) for v in values], dtype=bool)
    kept = values[valid]
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) for v in kept)
    names = sorted({v for v in kept}, key=float) if numeric else sorted({str(v) for v in kept})
    lookup = {str(v): i for i, v in enumerate(names)}
    codes = np.array([lookup[str(v)] for v in kept], dtype=np.int64)
    return AttributeCodes(valid, codes, tuple(str(v) for v in names))


def _require_two_groups(name: str, coded: AttributeCodes) -> None:
    if len(coded.categories) < 2:
        raise ValueError(
            f"{name}: a subgroup audit needs at least two non-empty groups, got values "
            f"{list(coded.categories)} ({int((~coded.valid).sum())} missing)"
        )


def _check_binary_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"labels and scores must be 1-D arrays of equal length, got shapes {y.shape} and {s.shape}"
        )
    if y.size == 0:
        raise ValueError("labels must not be empty")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0/1, got values {sorted(set(np.unique(y).tolist()))[:10]}")
    if not np.isfinite(s).all() or s.min() < 0.0 or s.max() > 1.0:
        raise ValueError(f"scores must be probabilities in [0, 1], got range [{s.min()}, {s.max()}]")
    return y.astype(np.int64), s


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an int >= 1, got {bins!r}")


def expected_calibration_error(labels, scores, bins: int = 10) -> float:
    """Binary expected calibration error with equal-width bins.

    ``ECE = sum_b (n_b / N) * |mean(label in b) - mean(score in b)|`` over the bins
    ``[0, 1/bins), ..., [1 - 1/bins, 1]``. Written by hand because neither scikit-learn
    nor fairlearn ships an ECE: :func:`sklearn.calibration.calibration_curve` drops empty
    bins and returns no bin counts, so the weighted sum cannot be formed from it.

    Args:
        labels: ``(N,)`` 0/1 labels.
        scores: ``(N,)`` positive-class probabilities in ``[0, 1]``.
        bins: number of equal-width bins.

    Returns:
        The ECE in ``[0, 1]``.

    Raises:
        ValueError: for mismatched shapes, non-0/1 labels, scores outside ``[0, 1]`` or ``bins < 1``.

    Example:
        >>> expected_calibration_error([0, 1, 0, 1], [0.9, 0.9, 0.9, 0.9])
        0.4
    """
    _check_bins(bins)
    y, s = _check_binary_inputs(labels, scores)
    return float(_ece_rows(y[None, :], s[None, :], bins)[0])


def _ece_rows(y: np.ndarray, s: np.ndarray, bins: int) -> np.ndarray:
    """ECE of each row of ``(B, n)`` label/score matrices, with one ``bincount`` for all rows."""
    n_rows, n = s.shape
    bin_index = np.minimum((s * bins).astype(np.int64), bins - 1)
    flat = (bin_index + bins * np.arange(n_rows)[:, None]).ravel()
    size = n_rows * bins
    sum_y = np.bincount(flat, weights=y.ravel().astype(np.float64), minlength=size)
    sum_s = np.bincount(flat, weights=s.ravel(), minlength=size)
    return np.abs(sum_y - sum_s).reshape(n_rows, bins).sum(axis=1) / n


def _auc_or_nan(y_true, y_score) -> float:
    return float(roc_auc_score(y_true, y_score)) if len(np.unique(y_true)) == 2 else float("nan")


@dataclass(frozen=True)
class SubgroupReport:
    """Per-group metrics of one attribute, the overall row and the gaps between groups.

    Attributes:
        attribute: the attribute's name (e.g. ``"site"``).
        per_group: one row per group (index: group name) with columns ``n``, ``positives``,
            ``auc`` (NaN with one class only), ``accuracy``, ``tpr`` (sensitivity), ``fpr``,
            ``specificity`` (NaN where undefined) and ``ece``.
        overall: the same metrics over all samples with a known attribute.
        gaps: ``equalized_odds_difference`` and ``demographic_parity_difference`` (fairlearn,
            between groups; equalised odds over groups with both classes), ``worst_group_accuracy``,
            ``accuracy_gap``, ``tpr_gap``, ``auc_gap`` (max - min over groups where defined).
        worst_group: the group with the lowest accuracy.
        threshold: the decision threshold on the scores.
        n_missing: samples left out because their attribute was missing.
    """

    attribute: str
    per_group: pd.DataFrame
    overall: dict[str, float]
    gaps: dict[str, float]
    worst_group: str
    threshold: float
    n_missing: int = 0
    groups: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """A JSON-able copy (NaN stays NaN; ``json.dumps`` writes it as ``NaN``)."""
        return {
            "attribute": self.attribute,
            "threshold": self.threshold,
            "n_missing": self.n_missing,
            "worst_group": self.worst_group,
            "per_group": {g: {k: float(v) for k, v in row.items()} for g, row in self.per_group.iterrows()},
            "overall": dict(self.overall),
            "gaps": dict(self.gaps),
        }


def _spread(values: pd.Series) -> float:
    finite = values.dropna()
    return float(finite.max() - finite.min()) if len(finite) >= 2 else float("nan")


def subgroup_metrics(
    labels, scores, groups, threshold: float = 0.5, attribute: str = "attribute", bins: int = 10
) -> SubgroupReport:
    """Compute per-group metrics with fairlearn's ``MetricFrame`` and the gaps between groups.

    Args:
        labels: ``(N,)`` 0/1 labels.
        scores: ``(N,)`` positive-class probabilities.
        groups: ``(N,)`` attribute values (missing ones are left out).
        threshold: a sample is predicted positive when ``score >= threshold``.
        attribute: the attribute's name, for the report and messages.
        bins: ECE bins.

    Returns:
        The :class:`SubgroupReport`.

    Raises:
        ValueError: invalid labels/scores/threshold, or fewer than two non-empty groups
            (the message lists the attribute values seen).

    Example:
        >>> r = subgroup_metrics([0, 1, 0, 1], [0.2, 0.8, 0.6, 0.4], ["a", "a", "b", "b"], attribute="site")
        >>> r.gaps["accuracy_gap"], r.worst_group
        (1.0, 'b')
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    _check_bins(bins)
    y_all, s_all = _check_binary_inputs(labels, scores)
    coded = encode_attribute(groups)
    if coded.valid.shape[0] != y_all.shape[0]:
        raise ValueError(
            f"groups must have length {y_all.shape[0]} (like labels), got {coded.valid.shape[0]}"
        )
    _require_two_groups(attribute, coded)
    y, s = y_all[coded.valid], s_all[coded.valid]
    g = np.asarray(coded.categories, dtype=object)[coded.codes]
    pred = (s >= threshold).astype(np.int64)

    def tpr(yt, ys):
        return float(true_positive_rate(yt, ys >= threshold, pos_label=1)) if yt.sum() else float("nan")

    def fpr(yt, ys):
        negatives = (yt == 0).sum()
        return float(false_positive_rate(yt, ys >= threshold, pos_label=1)) if negatives else float("nan")

    metrics = {
        "n": lambda yt, ys: float(len(yt)),
        "positives": lambda yt, ys: float(yt.sum()),
        "auc": _auc_or_nan,
        "accuracy": lambda yt, ys: float(np.mean((ys >= threshold) == yt)),
        "tpr": tpr,
        "fpr": fpr,
        "specificity": lambda yt, ys: 1.0 - fpr(yt, ys),
        "ece": lambda yt, ys: float(_ece_rows(yt[None, :], ys[None, :], bins)[0]),
    }
    frame = MetricFrame(metrics=metrics, y_true=y, y_pred=s, sensitive_features=pd.Series(g, name=attribute))
    per_group = frame.by_group.astype(float)
    per_group.index = per_group.index.astype(str)

    both = per_group.index[(per_group["positives"] > 0) & (per_group["positives"] < per_group["n"])]
    in_both = np.isin(g, np.asarray(both, dtype=object))
    eod = (
        float(equalized_odds_difference(y[in_both], pred[in_both], sensitive_features=g[in_both]))
        if len(both) >= 2
        else float("nan")
    )
    accuracy = per_group["accuracy"]
    gaps = {
        "equalized_odds_difference": eod,
        "demographic_parity_difference": float(demographic_parity_difference(y, pred, sensitive_features=g)),
        "worst_group_accuracy": float(accuracy.min()),
        "accuracy_gap": _spread(accuracy),
        "tpr_gap": _spread(per_group["tpr"]),
        "auc_gap": _spread(per_group["auc"]),
    }
    return SubgroupReport(
        attribute=attribute,
        per_group=per_group,
        overall={k: float(v) for k, v in frame.overall.items()},
        gaps=gaps,
        worst_group=str(accuracy.idxmin()),
        threshold=float(threshold),
        n_missing=int((~coded.valid).sum()),
        groups=coded.categories,
    )


def _bootstrap_rows(
    y: np.ndarray, s: np.ndarray, threshold: float, bins: int, names
) -> dict[str, np.ndarray]:
    """Metrics of each row of ``(B, n)`` resampled labels and scores, vectorised over rows."""
    pred = s >= threshold
    positives = y.sum(axis=1)
    negatives = y.shape[1] - positives
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        tp = (pred & (y == 1)).sum(axis=1)
        fp = (pred & (y == 0)).sum(axis=1)
        if "accuracy" in names:
            out["accuracy"] = (pred == (y == 1)).mean(axis=1)
        if "tpr" in names:
            out["tpr"] = np.where(positives > 0, tp / positives, np.nan)
        if "fpr" in names or "specificity" in names:
            fpr = np.where(negatives > 0, fp / negatives, np.nan)
            out["fpr"], out["specificity"] = fpr, 1.0 - fpr
        if "auc" in names:
            ranks = rankdata(s, axis=1)
            rank_sum = (ranks * y).sum(axis=1)
            auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
            out["auc"] = np.where((positives > 0) & (negatives > 0), auc, np.nan)
        if "ece" in names:
            out["ece"] = _ece_rows(y, s, bins)
    return {k: out[k] for k in names}


def bootstrap_ci(
    labels,
    scores,
    groups,
    metrics: Sequence[str] = ("auc", "tpr"),
    n_boot: int = 200,
    alpha: float = 0.05,
    seed: int = 0,
    threshold: float = 0.5,
    bins: int = 10,
) -> dict[str, dict[str, tuple[float, float]]]:
    """Percentile bootstrap intervals of per-group metrics, resampling within each group.

    Resampling is stratified by (group, label): every replicate keeps each group's size and
    its numbers of positives and negatives (as pROC's default stratified bootstrap), so AUC,
    TPR and FPR stay defined. All replicates of a group are drawn and scored at once as
    ``(n_boot, n_group)`` matrices — fairlearn's ``MetricFrame(n_boot=...)`` resamples the
    whole data set, unstratified, and rebuilds a frame per replicate, which is much slower.

    Args:
        labels: ``(N,)`` 0/1 labels.
        scores: ``(N,)`` positive-class probabilities.
        groups: ``(N,)`` attribute values (missing ones are left out).
        metrics: names from :data:`BOOTSTRAP_METRICS`.
        n_boot: bootstrap replicates.
        alpha: the intervals cover ``1 - alpha``.
        seed: seed of the resampling.
        threshold: decision threshold for accuracy/TPR/FPR/specificity.
        bins: ECE bins.

    Returns:
        ``{group: {metric: (low, high)}}``; ``(nan, nan)`` where a metric is undefined.

    Raises:
        ValueError: unknown metric, ``n_boot < 1``, ``alpha`` outside ``(0, 1)``, invalid inputs,
            or fewer than two non-empty groups.

    Example:
        >>> ci = bootstrap_ci([0, 1] * 20, [0.3, 0.7] * 20, ["a"] * 20 + ["b"] * 20, ["accuracy"], n_boot=20)
        >>> ci["a"]["accuracy"]
        (1.0, 1.0)
    """
    unknown = [m for m in metrics if m not in BOOTSTRAP_METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {BOOTSTRAP_METRICS}, got {list(metrics)!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an int >= 1, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    _check_bins(bins)
    y_all, s_all = _check_binary_inputs(labels, scores)
    coded = encode_attribute(groups)
    if coded.valid.shape[0] != y_all.shape[0]:
        raise ValueError(
            f"groups must have length {y_all.shape[0]} (like labels), got {coded.valid.shape[0]}"
        )
    _require_two_groups("groups", coded)
    y, s = y_all[coded.valid], s_all[coded.valid]
    rng = np.random.default_rng(seed)
    quantiles = (100 * alpha / 2, 100 * (1 - alpha / 2))
    result: dict[str, dict[str, tuple[float, float]]] = {}
    for code, name in enumerate(coded.categories):
        members = np.flatnonzero(coded.codes == code)
        draws = []
        for cls in (0, 1):  # stratify by label inside the group
            cell = members[y[members] == cls]
            if cell.size:
                draws.append(cell[rng.integers(0, cell.size, size=(n_boot, cell.size))])
        index = np.concatenate(draws, axis=1)
        values = _bootstrap_rows(y[index], s[index], threshold, bins, list(metrics))
        result[name] = {}
        for metric, v in values.items():
            finite = v[np.isfinite(v)]
            low, high = np.percentile(finite, quantiles) if finite.size else (np.nan, np.nan)
            result[name][metric] = (float(low), float(high))
    return result
