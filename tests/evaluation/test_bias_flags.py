"""Flagging rule (truth table), thresholds validation and the plain-language summary."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evaluation.bias_flags import AuditThresholds, flag_attribute, summary_sentence
from evaluation.latent_leakage import ProbeResult
from evaluation.subgroup_audit import subgroup_metrics


@pytest.mark.parametrize(("leaks", "relies", "material"), list(itertools.product([True, False], repeat=3)))
def test_flag_truth_table(leaks, relies, material):
    thresholds = AuditThresholds(alpha=0.01, gap_threshold=0.05)
    flagged, reason = flag_attribute(
        leakage_p=0.001 if leaks else 0.2,
        reliance_p=0.004 if relies else 0.02,  # 0.02 is significant at 0.05 but not at 0.01
        gap=0.12 if material else 0.03,
        thresholds=thresholds,
    )
    assert flagged == (leaks and relies and material)
    assert reason.startswith("flagged: " if flagged else "not flagged: ")
    assert ("latent encodes it (p=0.001 < 0.01)" in reason) == leaks
    assert ("within each label the decision does not rely on it (p=0.02 >= 0.01)" in reason) == (not relies)
    assert ("equalised-odds difference 0.120 > 0.05" in reason) == material


def test_undefined_gap_and_probe_floor_do_not_flag():
    flagged, reason = flag_attribute(0.001, 0.001, float("nan"))
    assert not flagged and "undefined" in reason
    floor = AuditThresholds(min_probe_auc=0.6, gap_metric="accuracy_gap")
    flagged, reason = flag_attribute(0.001, 0.001, 0.2, floor, probe_auc=0.55)
    assert not flagged and "probe AUC 0.55 below the 0.60 floor" in reason and "accuracy gap 0.200" in reason
    assert flag_attribute(0.001, 0.001, 0.2, floor, probe_auc=0.7)[0]


def test_thresholds_are_validated_and_pick_their_gap():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\), got 0"):
        AuditThresholds(alpha=0)
    with pytest.raises(ValueError, match=r"gap_threshold must be in \[0, 1\]"):
        AuditThresholds(gap_threshold=-0.1)
    with pytest.raises(ValueError, match="gap_metric must be one of"):
        AuditThresholds(gap_metric="worst_group_accuracy")
    with pytest.raises(ValueError, match=r"min_probe_auc must be in \[0.5, 1\]"):
        AuditThresholds(min_probe_auc=0.3)
    with pytest.raises(ValueError, match=r"leakage_p must be a p-value in \[0, 1\]"):
        flag_attribute(1.2, 0.0, 0.1)
    report = subgroup_metrics([0, 1, 0, 1], [0.2, 0.8, 0.6, 0.4], ["a", "a", "b", "b"])
    assert AuditThresholds(gap_metric="tpr_gap").gap_of(report) == 1.0


def site_report():
    """Sites A, B, C with 10 positives and 10 negatives each; detected positives 10, 5, 9."""
    labels, scores, groups = [], [], []
    for site, detected in (("A", 10), ("B", 5), ("C", 9)):
        labels += [1] * 10 + [0] * 10
        scores += [0.9] * detected + [0.1] * (10 - detected) + [0.2] * 10
        groups += [site] * 20
    return subgroup_metrics(np.array(labels), np.array(scores), groups, attribute="site")


def test_summary_sentence_names_the_group_and_numbers():
    report = site_report()
    weights = np.full(10, 0.05)
    weights[[3, 7]] = 0.3  # dims 3 and 7 hold 60% of the probe weight
    probe = ProbeResult(0.93, weights, (0.92, 0.94), ("A", "B", "C"), 60)
    reliance = {"mean_abs_delta_logit": 0.31, "delta_logit_fraction_of_std": 0.15}
    sentence = summary_sentence("site", report, probe, reliance, erasure_delta_auc=-0.004)
    # B detects 5/10; the others pooled detect 19/20
    assert sentence.startswith("site B: sensitivity 0.50 vs 0.95 elsewhere; ")
    assert "latent dims 3 and 7 encode site (probe AUC 0.93)" in sentence
    assert "by 0.31 on average (15% of its spread;" in sentence and "not a test of reliance" in sentence
    assert sentence.endswith("erasing site changes AUC by -0.004")
    single = ProbeResult(0.8, np.array([0.1, 0.8, 0.1]), (0.8,), ("A", "B"), 10)
    assert "latent dim 1 encodes site (probe AUC 0.80)" in summary_sentence("site", report, single)
