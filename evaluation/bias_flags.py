"""When an attribute is flagged in a bias audit, and one plain sentence saying why.

An attribute is flagged when all three hold: the latent mean encodes it (leakage
permutation test significant), the decision relies on it within each label (reliance
permutation test significant) — both after Holm correction over the audited attributes — and
the model treats its groups differently (a subgroup gap above a threshold). The audit also
reports an intervention — how far removing the attribute's direction would move the logit —
which is not a test of reliance; :data:`INTERVENTION_READING` and :data:`RELIANCE_READING` say
how to read each, and every report of the audit shows both. Leakage alone is not
harm (the latent may encode site without the head reading it); a gap alone may come
from case mix rather than from the model's use of the attribute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evaluation.latent_leakage import ProbeResult
from evaluation.subgroup_audit import SubgroupReport

__all__ = [
    "AuditThresholds",
    "GAP_METRICS",
    "INTERVENTION_READING",
    "RELIANCE_READING",
    "flag_attribute",
    "intervention_phrase",
    "reliance_phrase",
    "summary_sentence",
]

INTERVENTION_READING = (
    "Intervention — what happens if we remove this direction: how far the logit would move if the "
    "attribute's direction were erased from the latent space, counting everything that shares the "
    "direction (disease information included), so a large value says that erasing would change "
    "decisions, not that the classifier relies on the attribute."
)
"""One sentence on reading :func:`intervention_phrase`, shown wherever the audit reports it."""

RELIANCE_READING = (
    "Within-label reliance — does the decision rely on it within each label: among images with the "
    "same label, a permutation test asks whether the logit moves with the attribute more than with a "
    "random reassignment of it (Holm-corrected over the attributes); a p below the threshold means "
    "the decision uses the attribute beyond what the label explains, and only this test enters the flag."
)
"""One sentence on reading :func:`reliance_phrase`, shown wherever the audit reports it."""

GAP_METRICS = (
    "equalized_odds_difference",
    "accuracy_gap",
    "tpr_gap",
    "auc_gap",
    "demographic_parity_difference",
)
"""Keys of :attr:`SubgroupReport.gaps` that can drive a flag (larger = more disparate)."""

_GAP_WORDS = {
    "equalized_odds_difference": "equalised-odds difference",
    "accuracy_gap": "accuracy gap",
    "tpr_gap": "sensitivity gap",
    "auc_gap": "AUC gap",
    "demographic_parity_difference": "demographic-parity difference",
}


@dataclass(frozen=True)
class AuditThresholds:
    """Decision thresholds of a bias audit.

    Args:
        alpha: significance level for the (Holm-corrected) leakage and reliance p-values.
        gap_threshold: the subgroup gap above which a difference counts as material.
        gap_metric: which gap; default the equalised-odds difference (the larger of the
            between-group TPR and FPR differences at the decision threshold). It is chosen
            over the accuracy gap because it sees missed cases and false alarms separately,
            which an accuracy gap can hide when groups differ in prevalence.
        min_probe_auc: optional effect-size floor: with a probe AUC below it, significant
            leakage alone (large N makes tiny leakage significant) does not flag.

    Raises:
        ValueError: a value out of range or an unknown ``gap_metric``.

    Example:
        >>> AuditThresholds(alpha=0.05).gap_metric
        'equalized_odds_difference'
    """

    alpha: float = 0.01
    gap_threshold: float = 0.05
    gap_metric: str = "equalized_odds_difference"
    min_probe_auc: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        if not 0.0 <= self.gap_threshold <= 1.0:
            raise ValueError(f"gap_threshold must be in [0, 1], got {self.gap_threshold!r}")
        if self.gap_metric not in GAP_METRICS:
            raise ValueError(f"gap_metric must be one of {GAP_METRICS}, got {self.gap_metric!r}")
        if self.min_probe_auc is not None and not 0.5 <= self.min_probe_auc <= 1.0:
            raise ValueError(f"min_probe_auc must be in [0.5, 1] or None, got {self.min_probe_auc!r}")

    def gap_of(self, report: SubgroupReport) -> float:
        """The report's gap named by :attr:`gap_metric`."""
        return float(report.gaps[self.gap_metric])


def _check_p(name: str, p: float) -> float:
    if not 0.0 <= p <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a p-value in [0, 1], got {p!r}")
    return float(p)


def flag_attribute(
    leakage_p: float,
    reliance_p: float,
    gap: float,
    thresholds: AuditThresholds | None = None,
    probe_auc: float | None = None,
) -> tuple[bool, str]:
    """Flag an attribute when leakage AND reliance are significant AND the gap is material.

    Args:
        leakage_p: corrected p-value of the leakage test.
        reliance_p: corrected p-value of the reliance test.
        gap: the subgroup gap (``thresholds.gap_metric``); NaN (undefined) never flags.
        thresholds: the :class:`AuditThresholds` (defaults if ``None``).
        probe_auc: the probe AUC, checked against ``thresholds.min_probe_auc`` when both are set.

    Returns:
        ``(flagged, reason)`` — the reason lists every condition, met or not, in words.

    Raises:
        ValueError: a p-value outside ``[0, 1]``.

    Example:
        >>> flag_attribute(0.001, 0.002, 0.12)[0]
        True
        >>> flag_attribute(0.001, 0.4, 0.12)[1]
        'not flagged: latent encodes it (p=0.001 < 0.01); within each label the decision does not rely on it (p=0.4 >= 0.01); equalised-odds difference 0.120 > 0.05'
    """
    t = thresholds if thresholds is not None else AuditThresholds()
    leakage_p, reliance_p = _check_p("leakage_p", leakage_p), _check_p("reliance_p", reliance_p)
    gap_words = _GAP_WORDS[t.gap_metric]
    leaks = leakage_p < t.alpha
    parts = [
        f"latent encodes it (p={leakage_p:.3g} < {t.alpha:g})"
        if leaks
        else f"latent does not detectably encode it (p={leakage_p:.3g} >= {t.alpha:g})"
    ]
    if t.min_probe_auc is not None and probe_auc is not None and probe_auc < t.min_probe_auc:
        leaks = False
        parts.append(f"probe AUC {probe_auc:.2f} below the {t.min_probe_auc:.2f} floor")
    relies = reliance_p < t.alpha
    parts.append(reliance_phrase(reliance_p, t.alpha))
    if gap is None or not math.isfinite(gap):
        material = False
        parts.append(f"{gap_words} undefined (a group lacks positives or negatives)")
    else:
        material = gap > t.gap_threshold
        sign = ">" if material else "<="
        parts.append(f"{gap_words} {gap:.3f} {sign} {t.gap_threshold:g}")
    flagged = leaks and relies and material
    return flagged, ("flagged: " if flagged else "not flagged: ") + "; ".join(parts)


def reliance_phrase(reliance_p: float, alpha: float = 0.01) -> str:
    """The within-label reliance test in words (read with :data:`RELIANCE_READING`).

    Args:
        reliance_p: the (Holm-corrected) p-value of the within-label reliance permutation test.
        alpha: the significance level.

    Returns:
        ``"within each label the decision relies on it (p=...)"`` or ``"... does not rely ..."``.

    Raises:
        ValueError: ``reliance_p`` outside ``[0, 1]``.

    Example:
        >>> reliance_phrase(1.0)
        'within each label the decision does not rely on it (p=1 >= 0.01)'
    """
    reliance_p = _check_p("reliance_p", reliance_p)
    if reliance_p < alpha:
        return f"within each label the decision relies on it (p={reliance_p:.3g} < {alpha:g})"
    return f"within each label the decision does not rely on it (p={reliance_p:.3g} >= {alpha:g})"


def intervention_phrase(attribute: str, reliance: dict[str, float]) -> str:
    """What removing the attribute's direction from the latent would do, in words (see :data:`INTERVENTION_READING`).

    Args:
        attribute: the attribute's name.
        reliance: ``mean_abs_delta_logit`` and ``delta_logit_fraction_of_std`` of the erasure
            (:func:`~evaluation.latent_leakage.logit_reliance` output).

    Returns:
        ``"intervention: removing the <attribute> direction from the latent would move the logit by ..."``.

    Example:
        >>> intervention_phrase("age_band", {"mean_abs_delta_logit": 3.56, "delta_logit_fraction_of_std": 0.43})
        'intervention: removing the age_band direction from the latent would move the logit by 3.56 on average (43% of its spread; this counts disease information that shares the direction, so it is not a test of reliance)'
    """
    return (
        f"intervention: removing the {attribute} direction from the latent would move the logit by "
        f"{reliance['mean_abs_delta_logit']:.2f} on average "
        f"({reliance['delta_logit_fraction_of_std']:.0%} of its spread; this counts disease information "
        "that shares the direction, so it is not a test of reliance)"
    )


def _rest_tpr(per_group, group: str) -> float:
    """TPR of all other groups pooled: ``sum(tpr_g * positives_g) / sum(positives_g)``."""
    rest = per_group.drop(index=group)
    rest = rest[rest["positives"] > 0]
    total = rest["positives"].sum()
    return float((rest["tpr"] * rest["positives"]).sum() / total) if total > 0 else float("nan")


def _dims_phrase(dims: list[int]) -> str:
    names = [str(d) for d in dims]
    if len(names) == 1:
        return f"latent dim {names[0]}"
    return "latent dims " + ", ".join(names[:-1]) + " and " + names[-1]


def summary_sentence(
    attribute: str,
    report: SubgroupReport,
    probe: ProbeResult | None = None,
    reliance: dict[str, float] | None = None,
    erasure_delta_auc: float | None = None,
    max_dims: int = 3,
) -> str:
    """One sentence for a non-programmer about an attribute's audit.

    Names the group whose sensitivity differs most from the other groups pooled (the lower
    one on a tie), the latent
    dims that carry the attribute (the fewest, up to ``max_dims``, holding half the probe
    weight), the reliance, and the AUC change of erasing the attribute.

    Args:
        attribute: the attribute's name (``"site"``).
        report: its :class:`SubgroupReport`.
        probe: its :class:`ProbeResult`, if computed.
        reliance: :func:`~evaluation.latent_leakage.logit_reliance` output, if computed.
        erasure_delta_auc: overall AUC after erasure minus before, if computed.
        max_dims: most dims to name.

    Returns:
        e.g. ``"site B: sensitivity 0.71 vs 0.89 elsewhere; latent dims 3 and 7 encode site
        (probe AUC 0.93); ...; erasing site changes AUC by -0.004"``.

    Example:
        >>> from evaluation.subgroup_audit import subgroup_metrics
        >>> r = subgroup_metrics([1, 1, 0, 1, 1, 0], [0.9, 0.8, 0.1, 0.9, 0.2, 0.1], list("aaabbb"))
        >>> summary_sentence("site", r)
        'site b: sensitivity 0.50 vs 1.00 elsewhere'
    """
    per_group = report.per_group
    candidates = per_group.index[per_group["positives"] > 0]
    parts = []
    if len(candidates):
        differences = {g: abs(per_group.loc[g, "tpr"] - _rest_tpr(per_group, g)) for g in candidates}
        finite = {g: d for g, d in differences.items() if np.isfinite(d)}
        if finite:
            # largest difference; on a tie (always, with two groups) the lower-sensitivity group
            group = max(finite, key=lambda g: (round(finite[g], 12), -per_group.loc[g, "tpr"]))
            parts.append(
                f"{attribute} {group}: sensitivity {per_group.loc[group, 'tpr']:.2f} "
                f"vs {_rest_tpr(per_group, group):.2f} elsewhere"
            )
    if not parts:
        parts.append(f"{attribute}: sensitivity not comparable between groups (too few positives)")
    if probe is not None:
        order = probe.top_dims(min(max_dims, probe.per_dim_weight.size))
        cumulative = np.cumsum(probe.per_dim_weight[order])
        dims = order[: int(np.searchsorted(cumulative, 0.5) + 1)]
        verb = "encodes" if len(dims) == 1 else "encode"
        parts.append(f"{_dims_phrase(sorted(dims))} {verb} {attribute} (probe AUC {probe.auc:.2f})")
    if reliance is not None:
        parts.append(intervention_phrase(attribute, reliance))
    if erasure_delta_auc is not None:
        parts.append(f"erasing {attribute} changes AUC by {erasure_delta_auc:+.3f}")
    return "; ".join(parts)
