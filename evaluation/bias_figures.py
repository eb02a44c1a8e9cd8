"""Figures of a bias audit (matplotlib, Agg backend, written as PNG).

* :func:`subgroup_bar_figure` — one metric per group with bootstrap intervals;
* :func:`leakage_figure` — probe AUC per attribute and which latent dims carry each;
* :func:`before_after_figure` — metrics before and after a mitigation.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import numpy as np

from evaluation.latent_leakage import ProbeResult
from evaluation.subgroup_audit import SubgroupReport

__all__ = ["before_after_figure", "leakage_figure", "subgroup_bar_figure"]

_METRIC_LABELS = {
    "tpr": "sensitivity (TPR)",
    "fpr": "false-positive rate",
    "specificity": "specificity",
    "accuracy": "accuracy",
    "auc": "AUC",
    "ece": "calibration error (ECE)",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, format="png")
    _pyplot().close(fig)
    return out


def subgroup_bar_figure(
    report: SubgroupReport,
    path: str | PathLike,
    metric: str = "tpr",
    ci: Mapping[str, Mapping[str, tuple[float, float]]] | None = None,
) -> Path:
    """Bar chart of one metric per group, the overall value as a line, intervals as error bars.

    Args:
        report: a :class:`SubgroupReport`.
        path: the PNG to write.
        metric: a per-group column of the report (``tpr``, ``fpr``, ``specificity``, ``accuracy``,
            ``auc``, ``ece``).
        ci: :func:`~evaluation.subgroup_audit.bootstrap_ci` output holding ``metric``; no error
            bars if ``None``.

    Returns:
        The written path.

    Raises:
        ValueError: ``metric`` not in the report, or ``ci`` lacks a group or the metric.

    Example:
        >>> from evaluation.subgroup_audit import subgroup_metrics
        >>> r = subgroup_metrics([0, 1, 0, 1], [0.2, 0.8, 0.6, 0.4], ["a", "a", "b", "b"])
        >>> subgroup_bar_figure(r, "/tmp/_tpr.png").suffix
        '.png'
    """
    if metric not in _METRIC_LABELS or metric not in report.per_group.columns:
        raise ValueError(f"metric must be one of {tuple(_METRIC_LABELS)}, got {metric!r}")
    groups = [str(g) for g in report.per_group.index]
    values = report.per_group[metric].to_numpy(dtype=float)
    errors = None
    if ci is not None:
        missing = [g for g in groups if g not in ci or metric not in ci[g]]
        if missing:
            raise ValueError(f"ci: no {metric!r} interval for group(s) {missing}")
        low = np.array([ci[g][metric][0] for g in groups])
        high = np.array([ci[g][metric][1] for g in groups])
        errors = np.clip(np.vstack([values - low, high - values]), 0.0, None)
        errors = np.nan_to_num(errors)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(groups) + 2.5, 3.6))
    x = np.arange(len(groups))
    colors = ["#c0504d" if g == report.worst_group else "#4f81bd" for g in groups]
    ax.bar(x, np.nan_to_num(values), yerr=errors, capsize=4, color=colors)
    overall = report.overall.get(metric, float("nan"))
    if np.isfinite(overall):
        ax.axhline(overall, color="black", linestyle="--", linewidth=1, label=f"overall {overall:.2f}")
    ax.bar([0], [0], color="#c0504d", label="lowest-accuracy group")  # legend entry only
    ax.legend(loc="lower right", fontsize=8)
    counts = report.per_group["n"].to_numpy(dtype=int)
    ax.set_xticks(x, [f"{g}\n(n={n})" for g, n in zip(groups, counts, strict=True)])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(_METRIC_LABELS[metric])
    ax.set_title(f"{_METRIC_LABELS[metric]} by {report.attribute}" + (" (95% CI)" if ci is not None else ""))
    fig.tight_layout()
    return _save(fig, path)


def leakage_figure(probes: Mapping[str, ProbeResult], path: str | PathLike) -> Path:
    """Probe AUC per attribute (chance line at 0.5) beside a heatmap of per-dim probe weight.

    Args:
        probes: ``{attribute: ProbeResult}``, all over the same latent size.
        path: the PNG to write.

    Returns:
        The written path.

    Raises:
        ValueError: no probes, or probes of different latent sizes.

    Example:
        >>> p = ProbeResult(0.9, np.array([0.7, 0.3]), (0.9,), ("a", "b"), 10)
        >>> leakage_figure({"site": p}, "/tmp/_leak.png").name
        '_leak.png'
    """
    if not probes:
        raise ValueError("probes must hold at least one attribute, got none")
    sizes = {name: p.per_dim_weight.size for name, p in probes.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"probes: per_dim_weight sizes differ between attributes: {sizes}")
    names = list(probes)
    aucs = np.array([probes[n].auc for n in names])
    spread = np.array(
        [[probes[n].auc - min(probes[n].fold_aucs), max(probes[n].fold_aucs) - probes[n].auc] for n in names]
    ).T
    weights = np.vstack([probes[n].per_dim_weight for n in names])
    plt = _pyplot()
    latent_dim = weights.shape[1]
    fig, (ax_auc, ax_map) = plt.subplots(
        1,
        2,
        figsize=(4 + 0.3 * latent_dim, 1.0 + 0.5 * len(names) + 1.5),
        gridspec_kw={"width_ratios": [1, max(1.0, latent_dim / 8)]},
    )
    y = np.arange(len(names))
    ax_auc.barh(y, aucs, xerr=np.clip(spread, 0, None), color="#4f81bd", capsize=3)
    ax_auc.axvline(0.5, color="black", linestyle="--", linewidth=1, label="chance")
    ax_auc.set_yticks(y, names)
    ax_auc.invert_yaxis()
    ax_auc.set_xlim(0.0, 1.0)
    ax_auc.set_xlabel("probe AUC (folds' range)")
    ax_auc.legend(loc="lower right", fontsize=8)
    image = ax_map.imshow(weights, aspect="auto", cmap="viridis", vmin=0.0)
    ax_map.set_yticks(y, names)
    ax_map.set_xticks(np.arange(latent_dim))
    ax_map.set_xlabel("latent dim")
    ax_map.set_title("share of probe weight", fontsize=9)
    fig.colorbar(image, ax=ax_map, fraction=0.05)
    fig.tight_layout()
    return _save(fig, path)


def before_after_figure(
    before: Mapping[str, float],
    after: Mapping[str, float],
    path: str | PathLike,
    labels: tuple[str, str] = ("before", "after"),
) -> Path:
    """Paired bars of metrics before and after a mitigation (e.g. erasure or DFR).

    Args:
        before: ``{metric: value}`` (e.g. ``auc``, ``worst_group_accuracy``, ``equalized_odds_difference``).
        after: the same metrics after mitigation.
        path: the PNG to write.
        labels: legend names of the two states.

    Returns:
        The written path.

    Raises:
        ValueError: empty or mismatched metric names (naming the differences).

    Example:
        >>> before_after_figure({"auc": 0.9}, {"auc": 0.88}, "/tmp/_ba.png").exists()
        True
    """
    if not before or set(before) != set(after):
        raise ValueError(
            f"before and after must name the same non-empty metrics, got only-before "
            f"{sorted(set(before) - set(after))} and only-after {sorted(set(after) - set(before))}"
        )
    names = list(before)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2.5, 3.6))
    x = np.arange(len(names))
    width = 0.38
    for offset, values, label, color in (
        (-width / 2, before, labels[0], "#9bbb59"),
        (width / 2, after, labels[1], "#4f81bd"),
    ):
        heights = np.array([float(values[n]) for n in names])
        bars = ax.bar(x + offset, np.nan_to_num(heights), width, label=label, color=color)
        ax.bar_label(bars, labels=[f"{h:.3f}" for h in heights], fontsize=7)
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=15, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.margins(y=0.15)
    ax.legend(fontsize=8)
    ax.set_title(f"{labels[0]} vs {labels[1]}")
    fig.tight_layout()
    return _save(fig, path)
