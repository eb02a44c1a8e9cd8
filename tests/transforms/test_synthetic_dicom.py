"""Synthetic DICOM: the source's geometry, the DERIVED/SYNTHETIC markings, no added identifiers."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import pydicom_data_dir, pydicom_test_dir
from transforms.dicom_series import read_dicom_series
from transforms.read_errors import ImageReadError
from transforms.synthetic_dicom import write_synthetic_series

GEOMETRY = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness")


@pytest.mark.parametrize(
    "source",
    [
        pydicom_data_dir() / "MR2_UNCR.dcm",  # real MR, uncompressed
        pydicom_data_dir() / "MR2_J2KR.dcm",  # the same, JPEG 2000 lossless
        pydicom_test_dir() / "CT_small.dcm",  # real CT
    ],
    ids=["mr", "mr_j2k", "ct"],
)
def test_a_real_slice_round_trips_with_its_geometry_and_markings(source: Path, tmp_path: Path) -> None:
    volume, meta = read_dicom_series([source])
    rng = np.random.default_rng(0)
    synthetic = volume[0] * 1.5 + rng.normal(0, 3, volume[0].shape)  # "enhanced", not integer
    files = write_synthetic_series(meta["source_files"], synthetic, tmp_path, "post-contrast T1")
    src = pydicom.dcmread(source, stop_before_pixels=True)
    out = pydicom.dcmread(files[0])
    assert list(out.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "SYNTHETIC" in out.ImageType
    assert out.SeriesDescription == "SYNTHETIC post-contrast T1"
    for tag in GEOMETRY:
        if tag in src:
            assert out.data_element(tag).value == src.data_element(tag).value, tag
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert out.data_element(uid).value != src.data_element(uid).value, uid
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    # no patient identifier beyond the source's, and no private tag
    for tag in ("PatientName", "PatientID", "PatientBirthDate"):
        assert str(out.get(tag, "")) == str(src.get(tag, "")), tag
    assert not any(element.tag.is_private for element in out)
    # the pixels read back (through the project's reader: same affine) within the 16-bit quantisation
    back, back_meta = read_dicom_series(files)
    step = float(out.RescaleSlope)
    np.testing.assert_allclose(back[0], synthetic, atol=step)
    np.testing.assert_allclose(back_meta["affine"], meta["affine"])


def test_a_series_keeps_slice_order_and_positions(tmp_path: Path) -> None:
    """Three slices of one series (a real CT slice moved along its normal), written back in order."""
    src = pydicom.dcmread(pydicom_test_dir() / "CT_small.dcm")
    series = tmp_path / "series"
    series.mkdir()
    for k, z in enumerate((10.0, -5.0, 2.5)):  # files not in spatial order
        ds = copy.deepcopy(src)
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], z]
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = k + 1
        ds.save_as(series / f"{k}.dcm")
    volume, meta = read_dicom_series(series)
    assert volume.shape[-1] == 3
    synthetic = volume[0] + np.arange(3)[None, None, :] * 100.0  # each slice its own offset
    files = write_synthetic_series(meta["source_files"], synthetic, tmp_path / "out", anonymise=True)
    outs = [pydicom.dcmread(f) for f in files]
    assert len({o.SeriesInstanceUID for o in outs}) == 1 and len({o.SOPInstanceUID for o in outs}) == 3
    assert [float(o.ImagePositionPatient[2]) for o in outs] == [-5.0, 2.5, 10.0]
    assert all(str(o.PatientName) == "" and o.PatientID == "" for o in outs)
    back, back_meta = read_dicom_series(tmp_path / "out")
    np.testing.assert_allclose(back[0], synthetic, atol=float(outs[0].RescaleSlope))
    np.testing.assert_allclose(back_meta["affine"], meta["affine"])


def test_bad_volumes_and_sources_are_named(tmp_path: Path) -> None:
    ct = pydicom_test_dir() / "CT_small.dcm"
    with pytest.raises(ValueError, match=r"volume must be \(x, y\) for one file or \(x, y, z\) with z = 1"):
        write_synthetic_series([ct], np.zeros((128, 128, 2)), tmp_path)
    with pytest.raises(ValueError, match="its source .*CT_small.dcm 128 x 128"):
        write_synthetic_series([ct], np.zeros((64, 64)), tmp_path)
    with pytest.raises(ValueError, match="finite"):
        write_synthetic_series([ct], np.full((128, 128), np.nan), tmp_path)
    with pytest.raises(ValueError, match="at least one DICOM file"):
        write_synthetic_series([], np.zeros((2, 2)), tmp_path)
    multi = pydicom_data_dir() / "emri_small.dcm"  # 10 frames in one file
    with pytest.raises(ImageReadError, match="emri_small.dcm.*single-frame"):
        write_synthetic_series([multi], np.zeros((64, 64)), tmp_path)
