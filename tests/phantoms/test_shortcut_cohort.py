"""Tests of phantoms/shortcut_cohort.py: shortcut in training, shifted test section, null attribute."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from phantoms import CALIBRATION_SECTION, SHIFTED_SECTION, generate_shortcut_cohort
from pipelines.datalists import load_datalist


def _agreement(records: list[dict]) -> float:
    return float(np.mean([(r["attributes"]["marker"] == "present") == (r["label"] == 1) for r in records]))


def test_shortcut_then_reversed_sections(tmp_path: Path) -> None:
    summary = generate_shortcut_cohort(tmp_path, n=120, seed=1, size=32, n_shifted=100, progress=False)
    datalist = summary["datalist"]
    assert summary["counts"] == {"training": 84, "validation": 12, "test": 24, SHIFTED_SECTION: 100}
    train = load_datalist(datalist, "training")  # every path resolves (load_datalist checks files)
    shifted = load_datalist(datalist, SHIFTED_SECTION)
    # agreement within 4 standard errors of the requested 0.9 / 0.1
    assert abs(_agreement(train) - 0.9) < 4 * np.sqrt(0.09 / len(train))
    assert abs(_agreement(shifted) - 0.1) < 4 * np.sqrt(0.09 / len(shifted))
    ids = [
        r["id"]
        for s in ("training", "validation", "test", SHIFTED_SECTION)
        for r in load_datalist(datalist, s)
    ]
    assert len(ids) == len(set(ids)) == 220
    assert all(r["id"].startswith("shifted-") and "/shifted/" in r["image"] for r in shifted)
    with (tmp_path / "factors.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(row["id"] for row in rows) == sorted(ids)
    # the null attribute is balanced in both cohorts and independent of the label
    groups = {r["attributes"]["random_group"] for r in train + shifted}
    assert len(groups) >= 2


def test_phantom_fields_reach_both_cohorts_and_clashes_are_named(tmp_path: Path) -> None:
    import json

    import pytest

    generate_shortcut_cohort(
        tmp_path, n=40, seed=2, size=32, n_shifted=20, progress=False, lesion_contrast_range=(0.3, 0.35)
    )
    with (tmp_path / "factors.csv").open() as fh:
        contrasts = [float(r["lesion_contrast"]) for r in csv.DictReader(fh) if r["lesion_contrast"] != "nan"]
    assert contrasts and all(0.3 <= c <= 0.35 for c in contrasts)
    data = json.loads((tmp_path / "datalist.json").read_text())
    assert data["shifted_phantom_config"]["lesion_contrast_range"] == [0.3, 0.35]
    with pytest.raises(ValueError, match=r"\['marker_correlation'\] are set by"):
        generate_shortcut_cohort(tmp_path / "x", n=10, marker_correlation=0.5, progress=False)


def test_calibration_cohort_is_held_out_with_the_training_agreement(tmp_path: Path) -> None:
    import pytest

    summary = generate_shortcut_cohort(
        tmp_path, n=40, seed=3, size=32, n_shifted=20, n_calibration=150, progress=False
    )
    datalist = summary["datalist"]
    assert summary["counts"][CALIBRATION_SECTION] == 150
    calibration = load_datalist(datalist, CALIBRATION_SECTION)
    assert abs(_agreement(calibration) - 0.9) < 4 * np.sqrt(0.09 / len(calibration))
    assert all(r["id"].startswith("calibration-") and "/calibration/" in r["image"] for r in calibration)
    others = {
        r["id"]
        for s in ("training", "validation", "test", SHIFTED_SECTION)
        for r in load_datalist(datalist, s)
    }
    assert not others & {r["id"] for r in calibration}
    with (tmp_path / "factors.csv").open() as fh:
        factor_ids = {row["id"] for row in csv.DictReader(fh)}
    assert factor_ids == others | {r["id"] for r in calibration}
    with pytest.raises(ValueError, match="n_calibration: expected an integer >= 0, got -1"):
        generate_shortcut_cohort(tmp_path / "bad", n=10, n_calibration=-1, progress=False)
