"""DICOM series: slices ordered by position, affine from the header, bad series refused."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from tests.conftest import pydicom_test_dir
from transforms.dicom_series import dicom_affine, read_dicom_series, to_channel_first
from transforms.read_errors import ImageReadError

CT_SERIES = pydicom_test_dir() / "dicomdirtests" / "98892001" / "CT5N"


def _write_series(folder, n=5, shuffle_names=True):
    """A real CT slice re-saved as an axial series with known positions and pixel values."""
    folder.mkdir()
    template = pydicom.dcmread(pydicom_test_dir() / "CT_small.dcm")
    base = template.pixel_array.astype(np.int16)
    names = [f"slice_{i:02d}.dcm" for i in range(n)]
    if shuffle_names:
        names = names[::-1]  # file order is the reverse of spatial order
    for i in range(n):
        ds = template.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, -20.0, 100.0 + 2.5 * i]
        ds.InstanceNumber = n - i  # deliberately anti-spatial
        ds.PixelData = (base + 100 * i).astype(np.int16).tobytes()
        ds.save_as(folder / names[i])
    return template, base


def test_series_sorted_by_position_not_name_or_instance_number(tmp_path):
    template, base = _write_series(tmp_path / "series")
    volume, meta = read_dicom_series(tmp_path / "series")
    slope, intercept = float(template.RescaleSlope), float(template.RescaleIntercept)
    assert volume.shape == (1, 128, 128, 5)
    for i in range(5):
        expected = (base + 100 * i) * slope + intercept
        np.testing.assert_allclose(volume[0, :, :, i], expected.T)
    # z step = 2.5 mm along +z (LPS z == RAS z), x/y spacing from PixelSpacing, LPS→RAS flips x and y
    affine = meta["affine"]
    assert affine[2, 2] == pytest.approx(2.5)
    assert affine[0, 0] == pytest.approx(-float(template.PixelSpacing[1]))
    assert affine[1, 1] == pytest.approx(-float(template.PixelSpacing[0]))
    np.testing.assert_allclose(affine[:3, 3], [10.0, 20.0, 100.0])
    assert meta["source_files"][0].endswith("slice_04.dcm")


def test_list_of_files_equals_folder(tmp_path):
    _write_series(tmp_path / "series")
    files = sorted((tmp_path / "series").iterdir())
    a, _ = read_dicom_series(tmp_path / "series")
    b, _ = read_dicom_series(files)
    np.testing.assert_array_equal(a, b)


def test_real_shipped_series_folder():
    volume, meta = read_dicom_series(CT_SERIES)
    assert volume.shape[-1] == len(list(CT_SERIES.iterdir()))
    z = [pydicom.dcmread(f).ImagePositionPatient[2] for f in meta["source_files"]]
    assert z == sorted(z) or z == sorted(z, reverse=True)


def test_duplicate_positions_refused(tmp_path):
    _write_series(tmp_path / "series", n=3)
    shutil.copy(tmp_path / "series" / "slice_00.dcm", tmp_path / "series" / "copy.dcm")
    with pytest.raises(ImageReadError, match="same position"):
        read_dicom_series(tmp_path / "series")


def test_folder_without_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match=r"empty: folder holds no files"):
        read_dicom_series(tmp_path / "empty")


def test_bad_slice_named(tmp_path):
    _write_series(tmp_path / "series", n=3)
    (tmp_path / "series" / "broken.dcm").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"broken\.dcm: empty file"):
        read_dicom_series(tmp_path / "series")


def test_to_channel_first_layouts():
    grey = np.arange(2 * 3 * 4).reshape(2, 3, 4)  # (frames, rows, cols)
    out = to_channel_first(grey)
    assert out.shape == (1, 4, 3, 2) and out[0, 3, 1, 0] == grey[0, 1, 3]
    colour = np.zeros((1, 3, 4, 3))
    assert to_channel_first(colour).shape == (3, 4, 3)


def test_affine_default_without_geometry():
    ds = pydicom.Dataset()
    np.testing.assert_allclose(dicom_affine(ds), np.diag([-1.0, -1.0, 1.0, 1.0]))
