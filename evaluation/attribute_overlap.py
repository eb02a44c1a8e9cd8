"""Whether an attribute moves the latent code differently in diseased images, along the disease direction.

An eraser that leaves no linear trace of a two-group attribute *inside each of two labels*
(LEACE fitted per label: ``fit_eraser(..., per_stratum=True)``) must map the attribute's effect
in each label — the mean code of one group minus the other's, among images with that label — to
zero, and so also their difference. When that difference points along the disease direction
(mean code of diseased minus healthy images), the erasure removes disease signal whatever the
eraser: a corner marker that draws an attention-pooled encoder away from the lesion weakens the
disease code in diseased images, so the marker's effect there differs from its effect in
healthy images by a vector along minus the disease direction (cosine near −1). An eraser
conditional on the label (pooled over the labels) removes only the average effect and keeps the
disease direction, but leaves that difference for a within-label probe to read.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000); g = rng.integers(0, 2, 2000)
    >>> mu = rng.normal(size=(2000, 4)) * 0.01
    >>> mu[:, 0] += y * (1 - 0.5 * g); mu[:, 1] += g  # the attribute halves the disease code
    >>> o = attribute_overlap(mu, g, y)
    >>> round(o.effect_cosine, 2), round(o.difference_disease_cosine, 2), round(o.difference_ratio, 2)
    (0.89, -1.0, 0.67)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.subgroup_audit import encode_attribute

__all__ = ["AttributeOverlap", "attribute_overlap"]


@dataclass(frozen=True)
class AttributeOverlap:
    """How a two-group attribute's effect on the latent code depends on a binary label.

    Attributes:
        effect_cosine: cosine between the attribute's effects (mean code of the second group
            minus the first's, sorted order) among images of the lower and of the higher label;
            1 when the attribute moves the code the same way whatever the label.
        difference_disease_cosine: cosine between (effect in the higher label − effect in the
            lower one) and the disease direction (higher-label minus lower-label mean code,
            averaged over the two groups); −1: the attribute weakens the disease code.
        difference_ratio: length of that difference over the disease direction's length.
    """

    effect_cosine: float
    difference_disease_cosine: float
    difference_ratio: float


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norms) if norms > 0 else float("nan")


def attribute_overlap(
    mu: np.ndarray, groups: Sequence[object] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> AttributeOverlap:
    """Measure whether a two-group attribute's effect on ``mu`` differs between two labels along the disease.

    Records with a missing attribute or label (``-1``) are left out.

    Args:
        mu: ``(N, D)`` latent means.
        groups: ``(N,)`` attribute values with exactly two groups.
        labels: ``(N,)`` integer labels with exactly two values.

    Returns:
        The :class:`AttributeOverlap`.

    Raises:
        ValueError: ``mu`` not ``(N, D)``, ``groups`` or ``labels`` of another length, not
            exactly two labels and two groups, or a (label, group) cell without images.
    """
    x = np.asarray(mu, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"mu must be (N, D), got shape {x.shape}")
    coded = encode_attribute(groups)
    y_all = np.asarray(labels)
    if coded.valid.shape[0] != x.shape[0] or y_all.shape != (x.shape[0],):
        raise ValueError(
            f"groups and labels must have length {x.shape[0]} (rows of mu), got "
            f"{coded.valid.shape[0]} and {y_all.shape}"
        )
    keep = coded.valid & (y_all >= 0)
    g = np.full(x.shape[0], -1, dtype=np.int64)
    g[coded.valid] = coded.codes
    x, g, y = x[keep], g[keep], y_all[keep].astype(np.int64)
    label_values, group_values = np.unique(y), np.unique(g)
    if len(label_values) != 2 or len(group_values) != 2:
        raise ValueError(
            f"attribute_overlap needs exactly two labels and two attribute groups, got labels "
            f"{label_values.tolist()} and groups {[coded.categories[i] for i in group_values]}"
        )
    means = {}
    for label in label_values:
        for group in group_values:
            rows = (y == label) & (g == group)
            if not rows.any():
                raise ValueError(
                    f"attribute_overlap: no image with label {int(label)} and group "
                    f"{coded.categories[group]!r}"
                )
            means[label, group] = x[rows].mean(axis=0)
    (lo, hi), (first, second) = label_values, group_values
    effect_lo = means[lo, second] - means[lo, first]
    effect_hi = means[hi, second] - means[hi, first]
    disease = 0.5 * ((means[hi, first] - means[lo, first]) + (means[hi, second] - means[lo, second]))
    difference = effect_hi - effect_lo
    disease_norm = float(np.linalg.norm(disease))
    return AttributeOverlap(
        effect_cosine=_cosine(effect_lo, effect_hi),
        difference_disease_cosine=_cosine(difference, disease),
        difference_ratio=float(np.linalg.norm(difference)) / disease_norm
        if disease_norm > 0
        else float("nan"),
    )
