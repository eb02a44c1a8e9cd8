"""Whitelisted audit attributes: age bands, salted site pseudonyms, no identifiers."""

from __future__ import annotations

import pydicom
import pytest

from tests.conftest import pydicom_test_dir
from transforms.dicom_attributes import ATTRIBUTE_TAGS, age_band, dicom_attributes, site_id


@pytest.mark.parametrize(
    ("value", "band"),
    [
        ("045Y", "40-49"),
        ("040Y", "40-49"),
        ("039Y", "30-39"),
        ("006M", "0-9"),
        ("003W", "0-9"),
        ("090Y", "90+"),
        ("", None),
        ("abc", None),
    ],
)
def test_age_band(value, band):
    assert age_band(value) == band


def test_site_id_is_salted_and_stable():
    a = site_id("General Hospital", "s1")
    assert a == site_id("  general   HOSPITAL ", "s1")
    assert a != site_id("General Hospital", "s2")
    assert a.startswith("site-") and "General" not in a
    with pytest.raises(ValueError, match="salt must be a non-empty string"):
        site_id("x", "")


def test_attributes_of_a_real_ct_hold_no_identifiers():
    ds = pydicom.dcmread(pydicom_test_dir() / "CT_small.dcm")
    ds.InstitutionName = "St Example Hospital"
    ds.PatientAge = "061Y"
    attrs = dicom_attributes(ds, salt="k")
    assert attrs["modality"] == "CT"
    assert attrs["age_band"] == "60-69"
    assert attrs["site"] == site_id("St Example Hospital", "k")
    assert set(attrs) <= set(ATTRIBUTE_TAGS.values())
    text = " ".join(attrs.values())
    for identifier in (str(ds.PatientName), str(ds.PatientID), "St Example Hospital"):
        assert identifier not in text
