"""Overlap of an attribute's within-label effects with the disease direction, and what erasers do with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.attribute_overlap import attribute_overlap
from evaluation.concept_erasure import fit_eraser


def coded_latents(disease_in_group, effect, n: int = 4000, dim: int = 16, seed: int = 0):
    """``mu = y * disease_in_group[g] + g * effect + noise`` (vectors of length ``dim``, noise sd 0.1)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    g = rng.integers(0, 2, n)
    mu = 0.1 * rng.normal(size=(n, dim))
    for label in (0, 1):
        for group in (0, 1):
            rows = (y == label) & (g == group)
            mu[rows] += label * np.asarray(disease_in_group[group]) + group * np.asarray(effect)
    return mu, g, y


E = np.eye(16)
DILUTING = ([E[0], 0.5 * E[0]], E[1])  # in group 1 the disease code is halved (attention drawn to the marker)


def test_attribute_apart_from_the_disease_acts_alike_in_both_labels():
    mu, g, y = coded_latents([E[0], E[0]], E[1])
    o = attribute_overlap(mu, g, y)
    assert o.effect_cosine > 0.99
    assert o.difference_ratio < 0.02  # the two effects differ by sampling noise only


def test_attribute_that_weakens_the_disease_code_differs_along_minus_the_disease_direction():
    mu, g, y = coded_latents(*DILUTING)
    o = attribute_overlap(mu, g, y)
    assert o.difference_disease_cosine < -0.99
    assert abs(o.difference_ratio - 0.5 / 0.75) < 0.02  # difference -0.5 e0, disease 0.75 e0
    assert abs(o.effect_cosine - 1 / np.sqrt(1.25)) < 0.01  # cos(e1, e1 - 0.5 e0)


def test_attribute_that_strengthens_the_disease_code_differs_along_it():
    mu, g, y = coded_latents([E[0], 1.5 * E[0]], E[1])
    assert attribute_overlap(mu, g, y).difference_disease_cosine > 0.99


def test_the_difference_is_what_per_label_erasure_removes_and_pooled_erasure_keeps():
    mu, g, y = coded_latents(*DILUTING)
    disease = mu[(y == 1) & (g == 0)].mean(0) - mu[(y == 0) & (g == 0)].mean(0)

    def kept(eraser) -> float:
        with torch.no_grad():
            moved = eraser(torch.as_tensor(mu + disease)).numpy() - eraser(torch.as_tensor(mu)).numpy()
        return float(np.linalg.norm(moved.mean(0)) / np.linalg.norm(disease))

    assert attribute_overlap(mu, g, y).difference_disease_cosine < -0.99
    # the per-label eraser must remove the difference, i.e. the disease direction; the pooled one keeps most
    assert kept(fit_eraser(mu, g, strata=y, per_stratum=True)) < 0.05
    assert kept(fit_eraser(mu, g, strata=y)) > 0.8
    # where the attribute acts alike in both labels, the per-label eraser keeps the disease direction too
    mu, g, y = coded_latents([E[0], E[0]], E[1])
    disease = mu[(y == 1) & (g == 0)].mean(0) - mu[(y == 0) & (g == 0)].mean(0)
    assert kept(fit_eraser(mu, g, strata=y, per_stratum=True)) > 0.8


def test_missing_values_are_left_out():
    mu, g, y = coded_latents(*DILUTING, n=1000)
    groups = np.where(np.arange(1000) % 7 == 0, None, g).astype(object)
    labels = np.where(np.arange(1000) % 11 == 0, -1, y)
    keep = (np.arange(1000) % 7 != 0) & (np.arange(1000) % 11 != 0)
    assert attribute_overlap(mu, groups, labels) == attribute_overlap(mu[keep], g[keep], y[keep])


def test_bad_inputs_are_refused_with_the_reason():
    mu, g, y = coded_latents([E[0], E[0]], E[1], n=200)
    with pytest.raises(ValueError, match="exactly two labels and two attribute groups"):
        attribute_overlap(mu, g, np.zeros(200, dtype=int))
    with pytest.raises(ValueError, match="exactly two labels and two attribute groups"):
        attribute_overlap(mu, np.arange(200) % 3, y)
    with pytest.raises(ValueError, match=r"length 200 \(rows of mu\)"):
        attribute_overlap(mu, g[:-1], y)
    with pytest.raises(ValueError, match=r"mu must be \(N, D\)"):
        attribute_overlap(mu[:, 0], g, y)
    keep = ~((y == 1) & (g == 1))
    with pytest.raises(ValueError, match="no image with label 1 and group '1'"):
        attribute_overlap(mu[keep], g[keep], y[keep])
