"""Disentanglement scores of a latent code against known generative factors: MIG, SAP and DCI.

The definitions follow the papers and the reference implementation in Google's
``disentanglement_lib`` (Locatello et al., 2019):

- MIG, the mutual information gap: Chen et al., "Isolating Sources of Disentanglement in
  Variational Autoencoders", NeurIPS 2018 (arXiv:1802.04942).
- SAP, the separated attribute predictability: Kumar et al., "Variational Inference of
  Disentangled Latent Concepts from Unlabeled Observations", ICLR 2018 (arXiv:1711.00848), Sec. 3.
- DCI, disentanglement / completeness / informativeness: Eastwood & Williams, "A Framework for
  the Quantitative Evaluation of Disentangled Representations", ICLR 2018 (openreview By-7dz-AZ).

Why no library: ``disentanglement-lib`` (last release 1.5, 2020) downloads from the index but
pins ``tensorflow==1.14`` / ``tensorflow-probability==0.7`` and imports ``gin.tf`` in every
metric module, none of which install on Python 3.11; ``disent`` pulls in Lightning, torchvision
and h5py and expects its own dataset objects. The metrics are short, so they are written here in
numpy + scikit-learn, matching ``disentanglement_lib`` where it is explicit (histogram
discretisation, ``mutual_info_score`` in nats, ``LinearSVC(C=0.01, class_weight="balanced")``).

Conventions shared by all scores:

- ``codes`` is ``(N, D)`` (e.g. the encoder means), ``factors`` is ``(N, K)``.
- A factor is *continuous* or *discrete*. ``continuous_factors=None`` infers it: a column
  holding only integer values is discrete (category codes, labels), anything else continuous.
- Factors that are constant over the N samples (zero entropy) carry nothing to predict; they
  are excluded from every score, their per-factor entry is NaN, and a ValueError is raised when
  no factor is left.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import Lasso, LogisticRegression
from sklearn.metrics import mutual_info_score
from sklearn.svm import LinearSVC

__all__ = [
    "dci",
    "discretize",
    "disentanglement_scores",
    "factor_entropy",
    "mig",
    "mutual_info_matrix",
    "sap",
]

logger = logging.getLogger("medglass.evaluation")


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, columns), got shape {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"{name} needs N >= 2 rows and >= 1 column, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = sorted({int(c) for c in np.nonzero(~np.isfinite(array))[1]})
        raise ValueError(f"{name} must be finite; NaN/inf in column(s) {bad}")
    return array


def _check_pair(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, f = _as_matrix(codes, "codes"), _as_matrix(factors, "factors")
    if c.shape[0] != f.shape[0]:
        raise ValueError(f"codes and factors must have the same N, got {c.shape} and {f.shape}")
    return c, f


def _continuous_flags(factors: np.ndarray, continuous_factors: Sequence[bool] | None) -> np.ndarray:
    if continuous_factors is None:
        return ~np.all(factors == np.round(factors), axis=0)
    flags = np.asarray(continuous_factors, dtype=bool).ravel()
    if flags.shape[0] != factors.shape[1]:
        raise ValueError(
            f"continuous_factors must have one flag per factor ({factors.shape[1]}), got {flags.shape[0]}"
        )
    return flags


def _discrete_factors(factors: np.ndarray, continuous: np.ndarray, bins: int) -> np.ndarray:
    """Integer factor codes: continuous columns histogram-binned, discrete ones re-indexed 0..L-1."""
    out = np.empty(factors.shape, dtype=np.int64)
    for k in range(factors.shape[1]):
        col = factors[:, [k]]
        out[:, k] = (
            discretize(col, bins)[:, 0] if continuous[k] else np.unique(col, return_inverse=True)[1].ravel()
        )
    return out


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = max(1, int(round(test_fraction * n)))
    if n - n_test < 2:
        raise ValueError(f"need >= 2 training rows after a {test_fraction} test split, got N={n}")
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def _standardise(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    std = x[train].std(axis=0)
    return (x - x[train].mean(axis=0)) / np.where(std > 0, std, 1.0)


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true`` (chance = 1 / number of classes)."""
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]))


def discretize(values: np.ndarray, bins: int = 20) -> np.ndarray:
    """Bin each column into ``bins`` equal-width bins over its own range.

    Same as ``disentanglement_lib``'s ``_histogram_discretize``: a value gets the index (1-based)
    of the histogram bin it falls in; a constant column lands in a single bin.

    Args:
        values: ``(N, K)`` finite values.
        bins: number of equal-width bins per column (>= 1).

    Returns:
        ``(N, K)`` int64 bin indices in ``1..bins``.

    Raises:
        ValueError: ``bins`` < 1, ``values`` not 2-D or not finite.

    Example:
        >>> discretize(np.array([[0.0], [0.5], [1.0]]), bins=2).ravel().tolist()
        [1, 2, 2]
    """
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    array = _as_matrix(values, "values")
    out = np.empty(array.shape, dtype=np.int64)
    for k in range(array.shape[1]):
        edges = np.histogram(array[:, k], bins)[1]
        out[:, k] = np.digitize(array[:, k], edges[:-1])
    return out


def mutual_info_matrix(codes_discrete: np.ndarray, factors_discrete: np.ndarray) -> np.ndarray:
    """Mutual information (nats) between every discrete code and every discrete factor.

    Args:
        codes_discrete: ``(N, D)`` integer code bins (see `discretize`).
        factors_discrete: ``(N, K)`` integer factor values.

    Returns:
        ``(D, K)`` matrix ``I(z_d; v_k)``.

    Raises:
        ValueError: shapes that are not ``(N, ·)`` with the same N >= 2.

    Example:
        >>> x = np.array([[0], [0], [1], [1]])
        >>> round(float(mutual_info_matrix(x, x)[0, 0]), 4)  # ln 2
        0.6931
    """
    codes, factors = _check_pair(codes_discrete, factors_discrete)
    return np.array(
        [
            [mutual_info_score(factors[:, k], codes[:, d]) for k in range(factors.shape[1])]
            for d in range(codes.shape[1])
        ]
    )


def factor_entropy(factors_discrete: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each discrete factor, ``H(v_k) = I(v_k; v_k)``.

    Args:
        factors_discrete: ``(N, K)`` integer factor values.

    Returns:
        ``(K,)`` entropies; 0 for a constant factor.

    Example:
        >>> factor_entropy(np.array([[0, 5], [1, 5]])).round(4).tolist()
        [0.6931, 0.0]
    """
    factors = _as_matrix(factors_discrete, "factors_discrete")
    return np.array([mutual_info_score(factors[:, k], factors[:, k]) for k in range(factors.shape[1])])


def mig(
    codes: np.ndarray, factors: np.ndarray, bins: int = 20, continuous_factors: Sequence[bool] | None = None
) -> dict:
    """Mutual information gap (Chen et al., 2018).

    Per factor: ``(I(z_top; v) - I(z_second; v)) / H(v)`` over the two codes with the most
    mutual information; MIG is the mean over factors with non-zero entropy. Codes and
    continuous factors are discretised into ``bins`` equal-width bins; discrete factors are
    used as they are. The estimate is biased by the binning (a code equal to a continuous
    factor scores slightly below 1).

    Args:
        codes: ``(N, D)`` latent codes, D >= 2.
        factors: ``(N, K)`` factor values.
        bins: histogram bins for codes and continuous factors.
        continuous_factors: per-factor flag; None infers it (non-integer values = continuous).

    Returns:
        ``{"mig": float, "per_factor": (K,) array}`` (NaN for zero-entropy factors).

    Raises:
        ValueError: bad shapes, D < 2, or every factor constant.

    Example:
        >>> f = np.array([[0.0], [0.0], [1.0], [1.0]])
        >>> mig(np.hstack([f, [[0], [1], [0], [1]]]), f)["mig"]
        1.0
    """
    codes, factors = _check_pair(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError(f"mig needs >= 2 codes to form a gap, got codes shape {codes.shape}")
    continuous = _continuous_flags(factors, continuous_factors)
    factors_d = _discrete_factors(factors, continuous, bins)
    mi = np.sort(mutual_info_matrix(discretize(codes, bins), factors_d), axis=0)[::-1]
    entropy = factor_entropy(factors_d)
    valid = entropy > 0
    if not valid.any():
        raise ValueError(f"mig: every factor is constant over the N={factors.shape[0]} samples")
    per_factor = np.full(factors.shape[1], np.nan)
    per_factor[valid] = (mi[0, valid] - mi[1, valid]) / entropy[valid]
    return {"mig": float(np.mean(per_factor[valid])), "per_factor": per_factor}


def sap(
    codes: np.ndarray,
    factors: np.ndarray,
    continuous_factors: Sequence[bool] | None = None,
    seed: int = 0,
    test_fraction: float = 0.3,
) -> dict:
    """Separated attribute predictability (Kumar et al., 2018).

    Score matrix ``S[d, k]``: how well the single code ``z_d`` predicts factor ``v_k`` —
    for a continuous factor the R² of a linear fit (the squared Pearson correlation, on all
    rows); for a discrete factor the held-out balanced accuracy of a linear SVM on that one
    standardised code (``LinearSVC(C=0.01, class_weight="balanced")`` as in disentanglement_lib,
    fit on a seeded ``1 - test_fraction`` split). SAP is the mean over factors of the gap
    between the best and second-best code. A perfectly separated discrete factor with two
    balanced levels scores about 1 - 0.5 = 0.5 (chance level of the second code).

    Args:
        codes: ``(N, D)`` latent codes, D >= 2.
        factors: ``(N, K)`` factor values.
        continuous_factors: per-factor flag; None infers it.
        seed: seed of the train/test split.
        test_fraction: held-out fraction for discrete factors.

    Returns:
        ``{"sap": float, "per_factor": (K,) array, "score_matrix": (D, K) array}``.

    Raises:
        ValueError: bad shapes, D < 2, every factor constant, or too few rows to split.

    Example:
        >>> f = np.linspace(0, 1, 50)[:, None]
        >>> round(sap(np.hstack([f, np.cos(40 * f)]), f)["sap"], 1)
        1.0
    """
    codes, factors = _check_pair(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError(f"sap needs >= 2 codes to form a gap, got codes shape {codes.shape}")
    continuous = _continuous_flags(factors, continuous_factors)
    valid = np.ptp(factors, axis=0) > 0
    if not valid.any():
        raise ValueError(f"sap: every factor is constant over the N={factors.shape[0]} samples")
    train, test = _split(codes.shape[0], test_fraction, seed)
    z = _standardise(codes, train)
    score = np.zeros((codes.shape[1], factors.shape[1]))
    for k in np.nonzero(valid)[0]:
        y = factors[:, k]
        for d in range(codes.shape[1]):
            if continuous[k]:
                if np.ptp(codes[:, d]) > 0:
                    score[d, k] = np.corrcoef(codes[:, d], y)[0, 1] ** 2
            elif np.unique(y[train]).size < 2:
                score[d, k] = _balanced_accuracy(y[test], np.full(test.size, y[train][0]))
            else:
                svm = LinearSVC(C=0.01, class_weight="balanced", dual=False).fit(
                    z[train, d : d + 1], y[train]
                )
                score[d, k] = _balanced_accuracy(y[test], svm.predict(z[test, d : d + 1]))
    top_two = np.sort(score, axis=0)[::-1][:2]
    per_factor = np.where(valid, top_two[0] - top_two[1], np.nan)
    return {"sap": float(np.nanmean(per_factor)), "per_factor": per_factor, "score_matrix": score}


def _normalised_entropy(p: np.ndarray, base: int) -> float:
    """Entropy of the distribution ``p / p.sum()`` in base ``base`` (0 when base is 1)."""
    if base < 2:
        return 0.0
    q = p[p > 0] / p.sum()
    return float(-(q * np.log(q)).sum() / math.log(base))


def _predictor(continuous: bool, estimator: str, alpha: float, n_train: int, seed: int):
    """The per-factor model of `dci` (see its docstring)."""
    if estimator == "forest":
        forest = RandomForestRegressor if continuous else RandomForestClassifier
        return forest(30, max_depth=8, random_state=seed)
    if continuous:
        return Lasso(alpha=alpha)
    return LogisticRegression(l1_ratio=1.0, solver="saga", C=1.0 / (alpha * n_train), max_iter=2000)


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    continuous_factors: Sequence[bool] | None = None,
    seed: int = 0,
    test_fraction: float = 0.3,
    estimator: str = "lasso",
    alpha: float = 0.02,
) -> dict:
    """Disentanglement, completeness and informativeness (Eastwood & Williams, 2018).

    One predictor per factor from all standardised codes gives the importance matrix
    ``R (D, K)``. ``estimator="lasso"`` (default, fast): ``Lasso(alpha)`` on the standardised
    factor for continuous factors, L1 ``LogisticRegression`` (saga, ``C = 1 / (alpha * n_train)``
    so both carry the same per-sample penalty) for discrete ones; importance = absolute
    coefficients (summed over classes). ``estimator="forest"``: a small random forest (30 trees,
    depth 8) and its impurity ``feature_importances_`` — captures non-monotone codes but gives
    noise codes some importance. Each factor's column is normalised to sum to 1 (as tree
    importances do) so factors are weighted alike. Then, as in the paper,
    ``D = sum_d rho_d (1 - H_K(P_d.))`` with ``rho_d`` the code's share of total importance,
    ``C = mean_k (1 - H_D(P_.k))`` (a factor no code predicts counts 0), and informativeness =
    the mean held-out score: balanced accuracy for discrete factors, R² clipped at 0 for
    continuous ones. Entropies are normalised by ``log K`` / ``log D``.

    Args:
        codes: ``(N, D)`` latent codes.
        factors: ``(N, K)`` factor values.
        continuous_factors: per-factor flag; None infers it.
        seed: seed of the train/test split and of the forest.
        test_fraction: held-out fraction.
        estimator: ``"lasso"`` or ``"forest"``.
        alpha: L1 strength for ``"lasso"``.

    Returns:
        ``{"disentanglement", "completeness", "informativeness"}`` floats plus ``"importance"``
        ``(D, K)``, ``"disentanglement_per_code"`` ``(D,)``, ``"completeness_per_factor"`` and
        ``"informativeness_per_factor"`` ``(K,)`` (NaN for constant factors).

    Raises:
        ValueError: bad shapes, unknown estimator, every factor constant, too few rows.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> f = rng.normal(size=(200, 2))
        >>> round(dci(np.hstack([f, rng.normal(size=(200, 1))]), f)["disentanglement"], 2)
        1.0
    """
    codes, factors = _check_pair(codes, factors)
    if estimator not in ("lasso", "forest"):
        raise ValueError(f"estimator must be 'lasso' or 'forest', got {estimator!r}")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    continuous = _continuous_flags(factors, continuous_factors)
    valid = np.ptp(factors, axis=0) > 0
    if not valid.any():
        raise ValueError(f"dci: every factor is constant over the N={factors.shape[0]} samples")
    train, test = _split(codes.shape[0], test_fraction, seed)
    z = _standardise(codes, train)
    n_codes, n_factors = codes.shape[1], factors.shape[1]
    importance = np.zeros((n_codes, n_factors))
    informativeness = np.full(n_factors, np.nan)
    for k in np.nonzero(valid)[0]:
        y = factors[:, k]
        if continuous[k]:
            y = (y - y[train].mean()) / (y[train].std() or 1.0)
        elif np.unique(y[train]).size < 2:  # nothing to fit: predict the one class seen
            informativeness[k] = _balanced_accuracy(y[test], np.full(test.size, y[train][0]))
            continue
        model = _predictor(bool(continuous[k]), estimator, alpha, train.size, seed).fit(z[train], y[train])
        weight = getattr(model, "feature_importances_", None)
        weight = np.abs(np.atleast_2d(model.coef_)).sum(axis=0) if weight is None else weight
        if weight.sum() > 0:
            importance[:, k] = weight / weight.sum()
        if continuous[k]:
            total = ((y[test] - y[test].mean()) ** 2).sum()
            residual = ((y[test] - model.predict(z[test])) ** 2).sum()
            informativeness[k] = max(0.0, 1.0 - residual / total) if total > 0 else 0.0
        else:
            informativeness[k] = _balanced_accuracy(y[test], model.predict(z[test]))
    used = importance[:, valid]
    per_code = np.array([1.0 - _normalised_entropy(r, used.shape[1]) if r.sum() > 0 else 0.0 for r in used])
    rho = used.sum(axis=1) / used.sum() if used.sum() > 0 else np.zeros(n_codes)
    completeness = np.full(n_factors, np.nan)
    completeness[valid] = [
        1.0 - _normalised_entropy(col, n_codes) if col.sum() > 0 else 0.0 for col in used.T
    ]
    return {
        "disentanglement": float((rho * per_code).sum()),
        "completeness": float(np.nanmean(completeness)),
        "informativeness": float(np.nanmean(informativeness)),
        "importance": importance,
        "disentanglement_per_code": per_code,
        "completeness_per_factor": completeness,
        "informativeness_per_factor": informativeness,
    }


def disentanglement_scores(
    codes: np.ndarray, factors: np.ndarray, names: Sequence[str], continuous: Sequence[bool] | None = None
) -> dict[str, float]:
    """MIG, SAP and DCI in one flat dictionary (e.g. for MLflow ``log_metrics``).

    Args:
        codes: ``(N, D)`` latent codes.
        factors: ``(N, K)`` factor values (see `factor_table`).
        names: K factor names.
        continuous: per-factor flags; None infers them.

    Returns:
        ``mig``, ``sap``, ``dci_disentanglement``, ``dci_completeness``, ``dci_informativeness``
        and per factor ``mig/<name>``, ``sap/<name>``, ``dci_completeness/<name>``,
        ``dci_informativeness/<name>`` (constant factors left out).

    Raises:
        ValueError: ``names`` not of length K, or as the individual scores.

    Example:
        >>> scores = disentanglement_scores(codes, factors, ["age", "sex"])  # doctest: +SKIP
        >>> scores["mig/age"]  # doctest: +SKIP
    """
    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim != 2 or len(names) != factors.shape[1]:
        raise ValueError(
            f"names must have one entry per factor column, got {len(names)} for factors {factors.shape}"
        )
    m = mig(codes, factors, continuous_factors=continuous)
    s = sap(codes, factors, continuous_factors=continuous)
    d = dci(codes, factors, continuous_factors=continuous)
    out = {
        "mig": m["mig"],
        "sap": s["sap"],
        "dci_disentanglement": d["disentanglement"],
        "dci_completeness": d["completeness"],
        "dci_informativeness": d["informativeness"],
    }
    per_factor = {
        "mig": m["per_factor"],
        "sap": s["per_factor"],
        "dci_completeness": d["completeness_per_factor"],
        "dci_informativeness": d["informativeness_per_factor"],
    }
    for key, row in per_factor.items():
        out.update({f"{key}/{n}": float(v) for n, v in zip(names, row, strict=True) if np.isfinite(v)})
    return out
