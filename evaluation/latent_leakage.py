"""Does the latent mean encode an attribute, and does the classifier use it?

* :func:`probe_auc` — a cross-validated logistic-regression probe from ``mu`` to the
  attribute (leakage) and which latent dims carry it;
* :func:`attribute_direction` / :func:`logit_reliance` — how much of the linear head's
  weight lies along the attribute direction and how far logits move when ``mu`` loses
  its component along it (reliance);
* :func:`permutation_test` with :func:`probe_statistic` / :func:`reliance_statistic`,
  and :func:`holm_correction` for several attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from evaluation.subgroup_audit import encode_attribute

__all__ = [
    "ProbeResult",
    "attribute_direction",
    "holm_correction",
    "logit_reliance",
    "permutation_test",
    "probe_auc",
    "probe_statistic",
    "reliance_statistic",
]


def _check_mu(mu) -> np.ndarray:
    array = np.asarray(mu, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise ValueError(f"mu must be a (N, D) array with N >= 2, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("mu must be finite (found NaN or inf)")
    return array


def _coded(mu, groups, min_categories: int = 2) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``mu`` and integer codes of the samples whose attribute is known."""
    x = _check_mu(mu)
    coded = encode_attribute(groups)
    if coded.valid.shape[0] != x.shape[0]:
        raise ValueError(f"groups must have length {x.shape[0]} (rows of mu), got {coded.valid.shape[0]}")
    if len(coded.categories) < min_categories:
        raise ValueError(
            f"groups: need at least {min_categories} attribute values, got {list(coded.categories)}"
        )
    return x[coded.valid], coded.codes, coded.categories


def _probe_model(seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))


def _fold_auc(model, x: np.ndarray, codes: np.ndarray, n_classes: int) -> float:
    proba = model.predict_proba(x)
    if n_classes == 2:
        return float(roc_auc_score(codes, proba[:, 1]))
    return float(roc_auc_score(codes, proba, multi_class="ovr", average="macro", labels=np.arange(n_classes)))


@dataclass(frozen=True)
class ProbeResult:
    """A cross-validated leakage probe.

    Attributes:
        auc: mean held-out AUC over folds (macro one-vs-rest for more than two categories);
            0.5 is chance.
        per_dim_weight: ``(D,)`` mean |coefficient| of the standardised probe, over folds and
            classes, normalised to sum 1 — which latent dims carry the attribute.
        fold_aucs: the per-fold AUCs.
        categories: the attribute values, in code order.
        n: samples used (attribute known).
    """

    auc: float
    per_dim_weight: np.ndarray
    fold_aucs: tuple[float, ...]
    categories: tuple[str, ...]
    n: int

    def top_dims(self, k: int = 3) -> list[int]:
        """The ``k`` latent dims with the largest probe weight, largest first."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k!r}")
        return [int(i) for i in np.argsort(-self.per_dim_weight, kind="stable")[:k]]


def probe_auc(mu, groups, folds: int = 5, seed: int = 0) -> ProbeResult:
    """Cross-validated logistic-regression probe predicting the attribute from ``mu``.

    Features are standardised inside each fold (so coefficients compare across dims).

    Args:
        mu: ``(N, D)`` latent means.
        groups: ``(N,)`` attribute values (missing ones are left out).
        folds: stratified folds (>= 2; each category needs at least ``folds`` samples).
        seed: seed of the fold split.

    Returns:
        The :class:`ProbeResult`.

    Raises:
        ValueError: bad shapes, fewer than two categories, or a category smaller than ``folds``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> g = rng.integers(0, 2, 200)
        >>> mu = np.c_[rng.normal(size=(200, 2)), g + 0.1 * rng.normal(size=200)]
        >>> probe_auc(mu, g).top_dims(1)
        [2]
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an int >= 2, got {folds!r}")
    x, codes, categories = _coded(mu, groups)
    counts = np.bincount(codes, minlength=len(categories))
    if counts.min() < folds:
        raise ValueError(
            f"groups: every attribute value needs >= folds={folds} samples, got counts "
            f"{dict(zip(categories, counts.tolist(), strict=True))}"
        )
    aucs, weights = [], []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, codes):
        model = _probe_model(seed).fit(x[train], codes[train])
        aucs.append(_fold_auc(model, x[test], codes[test], len(categories)))
        weights.append(np.abs(model[-1].coef_).mean(axis=0))
    weight = np.mean(weights, axis=0)
    total = weight.sum()
    weight = weight / total if total > 0 else np.full_like(weight, 1.0 / weight.size)
    return ProbeResult(float(np.mean(aucs)), weight, tuple(aucs), categories, int(x.shape[0]))


def _rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Mann–Whitney AUC (ties count half); NaN without both classes."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = rankdata(score)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _least_squares_probe_auc(x_train, c_train, x_test, c_test, n_classes: int) -> float:
    """Held-out AUC of a ridge least-squares linear discriminant (closed form, standardised)."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0
    a_train = np.c_[(x_train - mean) / std, np.ones(len(x_train))]
    a_test = np.c_[(x_test - mean) / std, np.ones(len(x_test))]
    targets = np.eye(n_classes)[c_train]
    gram = a_train.T @ a_train + 1e-3 * len(a_train) * np.eye(a_train.shape[1])
    scores = a_test @ np.linalg.solve(gram, a_train.T @ targets)
    if n_classes == 2:
        return _rank_auc(c_test == 1, scores[:, 1])
    return float(np.nanmean([_rank_auc(c_test == k, scores[:, k]) for k in range(n_classes)]))


def probe_statistic(
    folds: int = 1, seed: int = 0, test_size: float = 0.3, model: str = "least_squares"
) -> Callable[..., float]:
    """A fast probe-AUC statistic ``fn(mu, groups) -> float`` for :func:`permutation_test`.

    Two shortcuts keep a permutation test fast: ``folds=1`` scores one stratified
    split (``test_size`` held out; ``folds>=2`` averages a stratified k-fold), and
    ``model="least_squares"`` fits a closed-form ridge linear discriminant on standardised ``mu``
    instead of a logistic regression (``model="logistic"``, much slower). Both are linear probes
    with near-identical AUCs; since the observed value and every permutation use the same
    function the test is valid either way. Report :func:`probe_auc` (5 folds) as the effect size.

    Args:
        folds: 1 for a single split, or the number of stratified folds.
        seed: seed of the split(s).
        test_size: held-out fraction when ``folds=1``.
        model: ``"least_squares"`` or ``"logistic"``.

    Returns:
        The statistic (macro one-vs-rest AUC for more than two categories).

    Raises:
        ValueError: ``folds < 1``, ``test_size`` outside ``(0, 1)`` or an unknown ``model``.

    Example:
        >>> stat = probe_statistic()
        >>> round(stat(np.c_[np.arange(40.0)], [0] * 20 + [1] * 20), 2)
        1.0
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
        raise ValueError(f"folds must be an int >= 1, got {folds!r}")
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    if model not in ("least_squares", "logistic"):
        raise ValueError(f"model must be 'least_squares' or 'logistic', got {model!r}")

    def split_auc(x, codes, n_classes, train, test) -> float:
        if model == "logistic":
            fitted = _probe_model(seed).fit(x[train], codes[train])
            return _fold_auc(fitted, x[test], codes[test], n_classes)
        return _least_squares_probe_auc(x[train], codes[train], x[test], codes[test], n_classes)

    def statistic(mu, groups) -> float:
        x, codes, categories = _coded(mu, groups)
        n_classes = len(categories)
        if folds >= 2:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
            return float(
                np.mean([split_auc(x, codes, n_classes, tr, te) for tr, te in splitter.split(x, codes)])
            )
        rng = np.random.default_rng(seed)
        test = np.zeros(len(codes), dtype=bool)
        for k in range(n_classes):  # stratified hold-out
            members = rng.permutation(np.flatnonzero(codes == k))
            test[members[: max(1, round(test_size * members.size))]] = True
        return split_auc(x, codes, n_classes, np.flatnonzero(~test), np.flatnonzero(test))

    return statistic


def attribute_direction(mu, groups) -> np.ndarray:
    """Unit vector from the first to the second category's mean ``mu`` (binary attribute).

    The difference of class-conditional means is the direction along which LEACE moves
    ``mu`` for a binary concept (its edit is ``Σ_xz (…)``, and ``Σ_xz ∝ mean_1 - mean_0``);
    the LDA direction ``Σ⁻¹ (mean_1 - mean_0)`` is how LEACE *reads* the amount to remove.
    The mean difference needs no covariance inverse and is what a reader can check by hand.

    Args:
        mu: ``(N, D)`` latent means.
        groups: ``(N,)`` attribute values with exactly two categories (missing left out).

    Returns:
        ``(D,)`` unit vector, pointing from ``categories[0]`` to ``categories[1]`` (sorted order).

    Raises:
        ValueError: not exactly two categories (naming them) or equal class means.

    Example:
        >>> attribute_direction([[0.0, 0.0], [0.0, 2.0]], ["a", "b"])
        array([0., 1.])
    """
    x, codes, categories = _coded(mu, groups)
    if len(categories) != 2:
        raise ValueError(
            f"groups: attribute_direction needs a binary attribute, got values {list(categories)}"
        )
    diff = x[codes == 1].mean(axis=0) - x[codes == 0].mean(axis=0)
    norm = np.linalg.norm(diff)
    if norm == 0:
        raise ValueError("groups: the two categories have identical mean mu; the direction is undefined")
    return diff / norm


def _logit_difference_weight(head_weight) -> np.ndarray:
    w = np.asarray(head_weight, dtype=np.float64)
    if w.ndim == 1:
        return w
    if w.ndim == 2 and w.shape[0] == 1:
        return w[0]
    if w.ndim == 2 and w.shape[0] == 2:
        return w[1] - w[0]
    raise ValueError(f"head_weight must be (D,), (1, D) or (2, D) for a binary head, got shape {w.shape}")


def logit_reliance(head_weight, mu, direction) -> dict[str, float]:
    """How much a linear head relies on the attribute direction.

    With ``w`` the weight of the logit difference (``W[1] - W[0]`` for a 2-logit head) and
    ``d`` the unit direction: ``abs_cos = |w·d| / |w|``. Removing the *centred* component of
    ``mu`` along ``d`` (``mu - ((mu - mean(mu))·d) d``, which keeps the mean logit) changes
    each logit difference by ``Δ = -(w·d)((mu - mean(mu))·d)``.

    Args:
        head_weight: ``(C, D)`` ``nn.Linear`` weight with ``C`` in {1, 2}, or ``(D,)``.
        mu: ``(N, D)`` latent means.
        direction: ``(D,)`` attribute direction (normalised here).

    Returns:
        ``abs_cos``; ``weight_along_direction`` (``w·d``); ``mean_abs_delta_logit`` (logit units);
        ``delta_logit_fraction_of_std`` (that over the std of the logit difference; NaN if constant).

    Raises:
        ValueError: incompatible shapes or a zero direction/weight.

    Example:
        >>> r = logit_reliance([1.0, 0.0], [[1.0, 5.0], [-1.0, 3.0]], [1.0, 0.0])
        >>> r["abs_cos"], r["mean_abs_delta_logit"]
        (1.0, 1.0)
    """
    w = _logit_difference_weight(head_weight)
    x = _check_mu(mu)
    d = np.asarray(direction, dtype=np.float64)
    if d.shape != (x.shape[1],) or w.shape != (x.shape[1],):
        raise ValueError(
            f"direction and head weight must have length D={x.shape[1]} (columns of mu), "
            f"got {d.shape} and {w.shape}"
        )
    if np.linalg.norm(d) == 0 or np.linalg.norm(w) == 0:
        raise ValueError("direction and head_weight must be non-zero")
    d = d / np.linalg.norm(d)
    along = float(w @ d)
    delta = -along * ((x - x.mean(axis=0)) @ d)
    spread = float(np.std(x @ w))
    mean_abs = float(np.mean(np.abs(delta)))
    return {
        "abs_cos": abs(along) / float(np.linalg.norm(w)),
        "weight_along_direction": along,
        "mean_abs_delta_logit": mean_abs,
        "delta_logit_fraction_of_std": mean_abs / spread if spread > 0 else float("nan"),
    }


def reliance_statistic(head_weight, strata=None) -> Callable[..., float]:
    """``fn(mu, groups) -> mean_i |w · (mean_{s(i), g(i)} - mean_{s(i)})|`` for :func:`permutation_test`.

    The mean absolute logit shift that the attribute's group means cause: how far the logit
    difference moves when each sample's group-mean offset is removed. For a binary attribute
    and no strata it is ``2 p0 p1 |w·d| ‖mean_1 - mean_0‖`` — head alignment with the direction
    of :func:`attribute_direction` times the separation of the groups — so, unlike the bare
    ``|cos|``, it is near zero under permutation, where the group means barely differ.

    An attribute correlated with the label also shifts logits through the label's features.
    With ``strata`` (the label of each sample) the group means are taken *within* each
    stratum, so only the attribute's own shift counts. Without them the label's shift and the
    attribute's add up where they agree and cancel where they oppose: on a test set in which
    a spurious marker is anti-correlated with the label, a model that leans on the marker has
    a *smaller* pooled statistic than under permutation, and the pooled test misses it.

    Args:
        head_weight: ``(C, D)`` weight with ``C`` in {1, 2}, or ``(D,)``.
        strata: optional ``(N,)`` stratum of each row of the ``mu`` the statistic will be given
            (use the same as :func:`permutation_test`'s ``strata``, which keeps the rows in
            place); ``None``: one stratum.

    Returns:
        The statistic function (works for any number of categories).

    Raises:
        ValueError: (from the returned function) a head of the wrong shape for ``mu``, or
            ``strata`` whose length differs from the rows of ``mu`` with a known attribute.

    Example:
        >>> stat = reliance_statistic([1.0, 0.0])
        >>> stat(np.array([[0.0, 0.0], [2.0, 0.0]]), ["a", "b"])
        1.0
        >>> mu = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
        >>> reliance_statistic([1.0, 0.0], strata=[0, 0, 1, 1])(mu, ["a", "b", "a", "b"])
        1.0
    """
    weight = _logit_difference_weight(head_weight)
    if strata is None:
        stratum_codes, n_strata = None, 1
    else:
        _, stratum_codes = np.unique(np.asarray(strata), return_inverse=True)
        stratum_codes = stratum_codes.reshape(-1)
        n_strata = int(stratum_codes.max()) + 1 if stratum_codes.size else 1

    def statistic(mu, groups) -> float:
        x, codes, categories = _coded(mu, groups)
        if weight.shape != (x.shape[1],):
            raise ValueError(
                f"head_weight must have length D={x.shape[1]} (columns of mu), got {weight.shape}"
            )
        if stratum_codes is None:
            cell = codes
        elif stratum_codes.shape[0] != x.shape[0]:
            raise ValueError(
                f"strata must have one value per row of mu with a known attribute ({x.shape[0]}), "
                f"got {stratum_codes.shape[0]}"
            )
        else:  # one cell per (stratum, group)
            cell = stratum_codes * len(categories) + codes
        stratum = np.zeros_like(codes) if stratum_codes is None else stratum_codes
        logit = x @ weight
        n_cells = n_strata * len(categories)
        cell_mean = np.bincount(cell, weights=logit, minlength=n_cells) / np.maximum(
            np.bincount(cell, minlength=n_cells), 1
        )
        stratum_mean = np.bincount(stratum, weights=logit, minlength=n_strata) / np.maximum(
            np.bincount(stratum, minlength=n_strata), 1
        )
        return float(np.mean(np.abs(cell_mean[cell] - stratum_mean[stratum])))

    return statistic


def permutation_test(
    statistic_fn: Callable[[np.ndarray, np.ndarray], float],
    mu,
    groups,
    n_perm: int = 200,
    seed: int = 0,
    strata=None,
) -> tuple[float, float]:
    """One-sided permutation test: is ``statistic_fn(mu, groups)`` larger than chance?

    The attribute values of the samples with a known attribute are shuffled ``n_perm`` times;
    ``p = (1 + #{perm >= observed}) / (1 + n_perm)`` (never 0; a NaN permuted value counts as
    not ``>=``).

    Args:
        statistic_fn: ``fn(mu, groups) -> float``, e.g. :func:`probe_statistic` or
            :func:`reliance_statistic`.
        mu: ``(N, D)`` latent means.
        groups: ``(N,)`` attribute values (missing ones are left out).
        n_perm: permutations (>= 1).
        seed: seed of the permutations.
        strata: optional ``(N,)`` stratum of each sample (e.g. the label): attribute values are
            shuffled only within a stratum, so an attribute that is correlated with the stratum
            keeps that correlation under the null (a conditional test). Requires every
            attribute value to be known.

    Returns:
        ``(observed, p_value)``.

    Raises:
        ValueError: ``n_perm < 1``, bad shapes, fewer than two categories, or ``strata`` with
            missing attribute values or of the wrong length.

    Example:
        >>> stat = lambda m, g: float(np.corrcoef(m[:, 0], g)[0, 1])
        >>> permutation_test(stat, np.arange(20.0)[:, None], np.arange(20) % 2, n_perm=9)[1] <= 1.0
        True
    """
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ValueError(f"n_perm must be an int >= 1, got {n_perm!r}")
    x, codes, _ = _coded(mu, groups)
    if strata is not None:
        strata = np.asarray(strata)
        if strata.shape != (np.asarray(mu).shape[0],) or x.shape[0] != strata.shape[0]:
            raise ValueError(
                f"strata must have one value per sample ({np.asarray(mu).shape[0]}) and every attribute "
                f"value must be known; got strata of shape {strata.shape} and {x.shape[0]} known values"
            )
        blocks = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    observed = float(statistic_fn(x, codes))
    rng = np.random.default_rng(seed)
    exceed = 0
    for _ in range(n_perm):
        if strata is None:
            permuted = rng.permutation(codes)
        else:
            permuted = codes.copy()
            for block in blocks:
                permuted[block] = codes[rng.permutation(block)]
        value = float(statistic_fn(x, permuted))
        exceed += bool(value >= observed)
    return observed, (1 + exceed) / (1 + n_perm)


def holm_correction(p_values: dict[str, float]) -> dict[str, float]:
    """Holm–Bonferroni adjusted p-values (family-wise error control, any dependence).

    Sorted ascending, ``p_adj(i) = max_{j <= i} min(1, (m - j + 1) p(j))``. Written by hand:
    statsmodels is not a dependency and SciPy only has Benjamini–Hochberg
    (``scipy.stats.false_discovery_control``), which controls the FDR instead.

    Args:
        p_values: ``{name: p}`` with ``p`` in ``[0, 1]``.

    Returns:
        ``{name: adjusted p}`` in the input order.

    Raises:
        ValueError: a p-value outside ``[0, 1]`` or NaN (naming it).

    Example:
        >>> holm_correction({"site": 0.01, "sex": 0.04, "age": 0.03})
        {'site': 0.03, 'sex': 0.06, 'age': 0.06}
    """
    for name, p in p_values.items():
        if not 0.0 <= p <= 1.0:  # also rejects NaN
            raise ValueError(f"p_values[{name!r}] must be in [0, 1], got {p!r}")
    names = sorted(p_values, key=lambda k: p_values[k])
    m = len(names)
    adjusted: dict[str, float] = {}
    running = 0.0
    for rank, name in enumerate(names):
        running = max(running, min(1.0, (m - rank) * p_values[name]))
        adjusted[name] = running
    return {name: adjusted[name] for name in p_values}
