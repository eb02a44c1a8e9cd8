"""Shared fixtures: the real DICOM/NIfTI files installed packages ship."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from phantoms import PhantomConfig, generate_cohort
from pipelines.training import build_network
from pipelines.training_config import TrainConfig
from tests.orthanc_server import OrthancServer, TestStudies, write_test_studies

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


# analysis fixtures (tests/evaluation and tests/pipelines): a small cohort and an untrained run folder
@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-image brain2d cohort at 32×32 (png); returns its datalist path."""
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(PhantomConfig(kind="brain2d", n=40, seed=3, size=32), out, progress=False)
    return out / "datalist.json"


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory: pytest.TempPathFactory, small_cohort: Path) -> Path:
    """A run folder as training writes it (config.json, best.pt) holding a seeded, untrained tiny net."""
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(datalist=small_cohort, out_dir=out, spatial_size=(32, 32), latent_dim=8)
    (out / "config.json").write_text(json.dumps(config.to_json()))
    torch.manual_seed(0)
    torch.save({"model": build_network(config).state_dict()}, out / "best.pt")
    return out


# a real PACS (tests/orthanc_server.py): Orthanc + DICOMweb on 127.0.0.1, started once per session
@pytest.fixture(scope="session")
def orthanc_studies(tmp_path_factory: pytest.TempPathFactory) -> TestStudies:
    """Copies of what ``orthanc`` holds: real CT/MR files, DICOM phantoms and an SR (see TestStudies)."""
    return write_test_studies(tmp_path_factory.mktemp("orthanc_studies"))


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory, orthanc_studies: TestStudies):
    """A started :class:`OrthancServer` loaded by STOW-RS with every file of ``orthanc_studies``."""
    with OrthancServer(tmp_path_factory.mktemp("orthanc")) as server:
        server.store(orthanc_studies.all_files)
        yield server
