"""Shared fixtures: the real DICOM/NIfTI files installed packages ship."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

logging.getLogger("pydicom").setLevel(logging.ERROR)


def pydicom_test_dir() -> Path:
    """pydicom's own test files (real CT/MR/US/SC DICOMs, plus non-image files)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def pydicom_data_dir() -> Path:
    """The larger files of the pydicom-data package (installed as ``data_store``)."""
    import data_store

    return Path(data_store.__file__).parent / "data"


def nibabel_data_dir() -> Path:
    """NIfTI test files shipped with nibabel."""
    import nibabel

    return Path(nibabel.__file__).parent / "tests" / "data"


def all_files(root: Path) -> list[Path]:
    """Every regular file under ``root``, sorted."""
    return sorted(Path(r) / n for r, _, names in os.walk(root) for n in names)


@pytest.fixture(scope="session")
def pydicom_files_dir() -> Path:
    return pydicom_test_dir()


@pytest.fixture(scope="session")
def pydicom_data_files_dir() -> Path:
    return pydicom_data_dir()


@pytest.fixture(scope="session")
def nibabel_files_dir() -> Path:
    return nibabel_data_dir()
