"""Bias-audit figures are valid PNGs and refuse inconsistent inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from evaluation.bias_figures import before_after_figure, leakage_figure, subgroup_bar_figure
from evaluation.latent_leakage import ProbeResult
from evaluation.subgroup_audit import bootstrap_ci, subgroup_metrics


def assert_png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 200 and image.size[1] > 200


def test_subgroup_bar_figure_with_intervals(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    scores = np.clip(0.5 + 0.3 * (labels - 0.5) + rng.normal(0, 0.2, 300), 0, 1)
    groups = rng.choice(["site A", "site B", "site C"], 300)
    report = subgroup_metrics(labels, scores, groups, attribute="site")
    ci = bootstrap_ci(labels, scores, groups, ["tpr", "auc"], n_boot=50)
    assert_png(subgroup_bar_figure(report, tmp_path / "tpr.png", ci=ci))
    assert_png(subgroup_bar_figure(report, tmp_path / "sub" / "auc.png", metric="auc"))
    with pytest.raises(ValueError, match="metric must be one of"):
        subgroup_bar_figure(report, tmp_path / "x.png", metric="n")
    with pytest.raises(ValueError, match=r"ci: no 'fpr' interval for group\(s\)"):
        subgroup_bar_figure(report, tmp_path / "x.png", metric="fpr", ci=ci)


def test_leakage_figure(tmp_path):
    rng = np.random.default_rng(1)
    probes = {
        name: ProbeResult(
            auc, (w := rng.uniform(size=16)) / w.sum(), (auc - 0.02, auc + 0.02), ("a", "b"), 100
        )
        for name, auc in (("site", 0.93), ("sex", 0.61), ("random_group", 0.5))
    }
    assert_png(leakage_figure(probes, tmp_path / "leak.png"))
    with pytest.raises(ValueError, match="at least one attribute"):
        leakage_figure({}, tmp_path / "x.png")
    odd = {"site": probes["site"], "tiny": ProbeResult(0.5, np.ones(3) / 3, (0.5,), ("a", "b"), 9)}
    with pytest.raises(ValueError, match=r"sizes differ between attributes: \{'site': 16, 'tiny': 3\}"):
        leakage_figure(odd, tmp_path / "x.png")


def test_before_after_figure(tmp_path):
    before = {"auc": 0.91, "worst_group_accuracy": 0.62, "equalized_odds_difference": 0.21}
    after = {"auc": 0.9, "worst_group_accuracy": 0.74, "equalized_odds_difference": 0.06}
    assert_png(before_after_figure(before, after, tmp_path / "ba.png", labels=("model", "erased")))
    with pytest.raises(ValueError, match=r"only-before \['auc'\] and only-after \[\]"):
        before_after_figure(before, {k: v for k, v in after.items() if k != "auc"}, tmp_path / "x.png")
