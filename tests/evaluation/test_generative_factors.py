"""Tests for evaluation/generative_factors.py: factors.csv aligned with encoded ids."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from evaluation.generative_factors import factor_table


def test_factor_table_aligns_ids_with_the_csv(small_cohort: Path) -> None:
    path = small_cohort.parent / "factors.csv"
    rows = {r["id"]: r for r in csv.DictReader(path.open())}
    ids = sorted(rows)[::-1][:25]  # reversed order: rows must follow ids, not the file
    values, names, continuous = factor_table(path, ids)
    assert values.shape == (25, len(names))
    assert {"id", "split", "age_band", "scanner"}.isdisjoint(names)
    assert not any(n.startswith("lesion_") for n in names)
    assert {"label", "sex", "age", "site"} <= set(names)
    flags = dict(zip(names, continuous, strict=True))
    assert flags["age"] and not flags["label"] and not flags["sex"]
    age = values[:, names.index("age")]
    assert age == pytest.approx([float(rows[i]["age"]) for i in ids], rel=1e-6)
    sex = values[:, names.index("sex")]
    assert sex.tolist() == [float(rows[i]["sex"] == "M") for i in ids]  # sorted categories: F=0, M=1


def test_factor_table_names_missing_ids_and_unknown_columns(small_cohort: Path) -> None:
    path = small_cohort.parent / "factors.csv"
    with pytest.raises(ValueError, match=r"1 of 2 ids not found: p99999"):
        factor_table(path, ["p00000", "p99999"])
    with pytest.raises(ValueError, match=r"unknown columns \['shoe_size'\]"):
        factor_table(path, ["p00000", "p00001"], columns=["age", "shoe_size"])
    with pytest.raises(ValueError, match=r"column 'lesion_x' has \d+ NaN values"):
        factor_table(path, [r["id"] for r in csv.DictReader(path.open())], columns=["lesion_x"])


def test_factor_table_drops_constant_column_with_a_note(tmp_path: Path, caplog) -> None:
    path = tmp_path / "factors.csv"
    path.write_text("id,split,sex,site,age\nb,training,F,A,30.5\na,test,F,B,41.0\nc,test,F,C,52.25\n")
    with caplog.at_level(logging.INFO, logger="medglass.evaluation"):
        values, names, continuous = factor_table(path, ["a", "b", "c"])
    assert names == ["site", "age"] and continuous == [False, True]
    assert values.tolist() == [[1.0, 41.0], [0.0, 30.5], [2.0, 52.25]]
    assert "dropping column 'sex'" in caplog.text
    with pytest.raises(ValueError, match=r"factors file not found"):
        factor_table(tmp_path / "nope.csv", ["a"])
