"""Audit attributes from a whitelist of DICOM tags — never names, IDs or dates.

Bias audits need subgroup attributes (sex, age band, site, scanner) but no identifiers.
Only the tags in :data:`ATTRIBUTE_TAGS` are read; the institution is replaced by a
salted hash so sites can be compared without being named.
"""

from __future__ import annotations

import hashlib
import re

from pydicom.dataset import Dataset

__all__ = ["ATTRIBUTE_TAGS", "age_band", "site_id", "dicom_attributes"]

#: DICOM keyword → attribute name. The whole whitelist; nothing else is copied.
ATTRIBUTE_TAGS = {
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "PatientSex": "sex",
    "PatientAge": "age_band",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "scanner",
    "InstitutionName": "site",
}

_AGE = re.compile(r"^\s*(\d{1,3})\s*([DWMY]?)\s*$", re.IGNORECASE)
_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0, "": 1.0}


def age_band(patient_age: str, width: int = 10) -> str | None:
    """Band a DICOM Age String (``"045Y"``, ``"006M"``) into ``"40-49"``-style decades.

    Args:
        patient_age: the PatientAge value.
        width: band width in years.

    Returns:
        The band, ``"90+"`` for ages of 90 and over (small groups identify people), or
        None when the value is not a valid age string.

    Example:
        >>> age_band("045Y"), age_band("006M"), age_band("093Y")
        ('40-49', '0-9', '90+')
    """
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width!r}")
    match = _AGE.match(str(patient_age or ""))
    if not match:
        return None
    years = int(match.group(1)) * _UNIT_YEARS[match.group(2).upper()]
    if years >= 90:
        return "90+"
    low = int(years // width) * width
    return f"{low}-{low + width - 1}"


def site_id(institution: str, salt: str) -> str:
    """A stable pseudonym for an institution: ``"site-"`` + 10 hex digits of SHA-256(salt, name).

    Args:
        institution: the InstitutionName value (normalised: case and spaces ignored).
        salt: a secret kept by the data owner; the same salt gives the same ids.

    Returns:
        The pseudonym.
    """
    if not salt:
        raise ValueError("salt must be a non-empty string, got ''")
    name = " ".join(str(institution).split()).casefold()
    return "site-" + hashlib.sha256(f"{salt}\x00{name}".encode()).hexdigest()[:10]


def dicom_attributes(ds: Dataset, salt: str) -> dict[str, str]:
    """The whitelisted audit attributes of a dataset (absent or empty tags are left out).

    Args:
        ds: a pydicom dataset (the header is enough).
        salt: see :func:`site_id`.

    Returns:
        ``{attribute: value}`` with keys from :data:`ATTRIBUTE_TAGS`' values.
    """
    out: dict[str, str] = {}
    for keyword, name in ATTRIBUTE_TAGS.items():
        value = ds.get(keyword)
        text = " ".join(str(value).split()) if value is not None else ""
        if not text:
            continue
        if name == "age_band":
            band = age_band(text)
            if band is not None:
                out[name] = band
        elif name == "site":
            out[name] = site_id(text, salt)
        elif name == "sex":
            out[name] = text.upper()[:1] if text.upper()[:1] in ("F", "M", "O") else "unknown"
        else:
            out[name] = text
    return out
