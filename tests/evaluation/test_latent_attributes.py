"""Tests for evaluation/latent_attributes.py: attribute codes, r / eta per latent, and the heatmap."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.latent_attributes import attribute_matrix, correlation_heatmap, latent_attribute_correlation

RECORDS = [
    {"id": "a", "label": 1, "attributes": {"sex": "M", "site": "B", "scanner": "X"}},
    {"id": "b", "label": 0, "attributes": {"sex": "F", "site": "A", "scanner": "X"}},
    {"id": "c", "label": 0, "attributes": {"site": "C", "scanner": "X"}},
    {"id": "d", "label": 1, "attributes": {"sex": "", "site": "A", "scanner": "X"}},
]


def test_attribute_matrix_codes_sorted_categories_and_missing(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="medglass.evaluation"):
        codes, categories = attribute_matrix(RECORDS)
    assert list(codes) == ["sex", "site", "label"]  # scanner is constant: skipped
    assert "skipping 'scanner'" in caplog.text
    assert codes["sex"].tolist() == [1, 0, -1, -1]  # absent and "" are missing
    assert categories["sex"] == ["F", "M"]
    assert codes["site"].tolist() == [1, 0, 2, 0] and categories["site"] == ["A", "B", "C"]
    assert codes["label"].tolist() == [1, 0, 0, 1] and categories["label"] == ["0", "1"]


def test_attribute_matrix_explicit_keys_and_bad_input() -> None:
    codes, _ = attribute_matrix(RECORDS, keys=["site"])
    assert list(codes) == ["site"]
    with pytest.raises(ValueError, match=r"no attribute with >= 2 categories among keys \['scanner'\]"):
        attribute_matrix(RECORDS, keys=["scanner"])
    with pytest.raises(ValueError, match=r"records must hold at least one datalist record, got 0"):
        attribute_matrix([])
    with pytest.raises(ValueError, match=r"records\[1\] must be a dict, got str"):
        attribute_matrix([RECORDS[0], "b"])
    with pytest.raises(ValueError, match=r"attribute 'boxes' must hold scalar values, got list"):
        attribute_matrix([{"boxes": [1, 2]}, {"boxes": []}], keys=["boxes"])


def test_attribute_matrix_on_a_generated_cohort(small_cohort: Path) -> None:
    records = json.loads(small_cohort.read_text())["training"]
    codes, categories = attribute_matrix(records)
    assert {"sex", "site", "marker", "random_group", "label"} <= set(codes)
    for name, values in codes.items():
        assert values.shape == (len(records),)
        assert values.min() >= 0 and values.max() == len(categories[name]) - 1
    assert codes["sex"].tolist() == [int(r["attributes"]["sex"] == "M") for r in records]


def test_correlation_is_one_for_a_copy_and_near_zero_for_independent_code() -> None:
    rng = np.random.default_rng(0)
    attribute = rng.integers(0, 2, size=2000)
    mu = np.stack([attribute * 2.0 - 5.0, -attribute.astype(float), rng.normal(size=2000)], axis=1)
    matrix, names = latent_attribute_correlation(mu, {"sex": attribute})
    assert names == ["sex"] and matrix.shape == (1, 3)
    assert matrix[0, 0] == pytest.approx(1.0)
    assert matrix[0, 1] == pytest.approx(-1.0)
    assert abs(matrix[0, 2]) < 3.0 / math.sqrt(2000)  # ~3 standard errors of r under independence


def test_point_biserial_by_hand_ignoring_missing_rows() -> None:
    codes = np.array([0, 0, 1, 1, -1])
    mu = np.array([[1.0], [2.0], [3.0], [5.0], [100.0]])  # the missing row's outlier must not count
    # sum dx dz = 2.5, sum dx^2 = 1, sum dz^2 = 8.75 over the four kept rows
    matrix, _ = latent_attribute_correlation(mu, {"g": codes})
    assert matrix[0, 0] == pytest.approx(2.5 / math.sqrt(8.75))


def test_eta_for_three_levels_by_hand() -> None:
    codes = np.array([0, 0, 1, 1, 2, 2])
    z = np.array([1.0, 3.0, 2.0, 4.0, 6.0, 8.0])
    # grand mean 4; group means 2, 3, 7: between = 2 * (4 + 1 + 9) = 28; total = 9+1+4+0+4+16 = 34
    mu = np.stack([z, -z, np.full(6, 0.3)], axis=1)
    matrix, _ = latent_attribute_correlation(mu, {"site": codes})
    assert matrix[0] == pytest.approx(
        [math.sqrt(28 / 34), math.sqrt(28 / 34), 0.0]
    )  # unsigned; constant -> 0


def test_correlation_rejects_bad_input() -> None:
    mu = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"attribute 'sex' has 3 codes, expected N=4 \(mu \(4, 2\)\)"):
        latent_attribute_correlation(mu, {"sex": np.array([0, 1, 0])})
    with pytest.raises(ValueError, match=r"attribute 'sex' needs >= 2 categories among its non-missing rows"):
        latent_attribute_correlation(mu, {"sex": np.array([0, -1, 0, -1])})
    with pytest.raises(ValueError, match=r"mu must be a 2-D array \(N >= 2, D\), got shape \(4,\)"):
        latent_attribute_correlation(np.zeros(4), {"sex": np.array([0, 1, 0, 1])})
    with pytest.raises(ValueError, match=r"attributes must hold at least one attribute"):
        latent_attribute_correlation(mu, {})


def test_heatmap_writes_a_png(tmp_path: Path) -> None:
    matrix = np.array([[0.9, -0.4, 0.0, 0.1], [0.2, 0.5, np.nan, -1.0]])
    out = correlation_heatmap(matrix, ["sex", "site"], tmp_path / "figs" / "heat.png", title="latents")
    assert out == tmp_path / "figs" / "heat.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 50
    with pytest.raises(ValueError, match=r"attribute_names must have 2 entries \(matrix rows\), got 1"):
        correlation_heatmap(matrix, ["sex"], tmp_path / "x.png")
