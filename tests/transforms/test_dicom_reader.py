"""Pixels of every readable shipped DICOM match independent references; bad files fail clearly."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import all_files, pydicom_data_dir, pydicom_test_dir
from transforms.dicom_reader import read_dicom_file
from transforms.read_errors import ImageReadError

LOSSLESS = {
    pydicom.uid.RLELossless,
    pydicom.uid.JPEGLossless,
    pydicom.uid.JPEGLosslessSV1,
    pydicom.uid.JPEGLSLossless,
    pydicom.uid.JPEG2000Lossless,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
}
GDCM_RLE_COLOUR_TWINS = {
    "SC_rgb_rle_16bit.dcm": "SC_rgb_16bit.dcm",
    "SC_rgb_rle_16bit_2frame.dcm": "SC_rgb_16bit_2frame.dcm",
    "SC_rgb_rle_32bit.dcm": "SC_rgb_32bit.dcm",
    "SC_rgb_rle_32bit_2frame.dcm": "SC_rgb_32bit_2frame.dcm",
}
SHIPPED = all_files(pydicom_test_dir()) + all_files(pydicom_data_dir())


def _read_all():
    """(path, ours) for every shipped file our reader accepts."""
    out = []
    for path in SHIPPED:
        try:
            out.append((path, read_dicom_file(path)))
        except ImageReadError:
            continue
    return out


@pytest.fixture(scope="module")
def readable():
    return _read_all()


def _pydicom_reference(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        return ds, ds.pixel_array


def _sitk_reference(path):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float64)
    return array


def _frames(ours):
    return ours.pixels.astype(np.float64)


def test_uncompressed_grey_pixels_match_pydicom_after_rescale(readable):
    compared = 0
    for path, ours in readable:
        ds = ours.dataset
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed or ours.is_colour or ours.decoder != "pydicom":
            continue
        ref_ds, raw = _pydicom_reference(path)
        ref = np.asarray(apply_modality_lut(raw, ref_ds), dtype=np.float64).reshape(ours.pixels.shape)
        got = _frames(ours)
        if str(ds.PhotometricInterpretation) == "MONOCHROME1":
            total = got + ref  # inversion: got = c - ref for one constant c
            assert np.allclose(total, total.flat[0]), path.name
            assert not np.allclose(got, ref), path.name
            np.testing.assert_allclose(got, _sitk_reference(path).reshape(got.shape), rtol=1e-5, atol=1e-2)
        else:
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-3, err_msg=path.name)
        compared += 1
    assert compared >= 40


def test_compressed_pixels_match_simpleitk(readable):
    compared = 0
    for path, ours in readable:
        syntax = ours.dataset.file_meta.TransferSyntaxUID
        if not syntax.is_compressed:
            continue
        if path.name in GDCM_RLE_COLOUR_TWINS:
            # GDCM misorders the byte segments of 16/32-bit colour RLE; the same image is
            # shipped uncompressed, decoded here by pydicom as the reference instead.
            twin = pydicom_data_dir() / GDCM_RLE_COLOUR_TWINS[path.name]
            twin_pixels = _pydicom_reference(twin)[1].astype(np.float32)
            np.testing.assert_array_equal(ours.pixels, twin_pixels.reshape(ours.pixels.shape))
            compared += 1
            continue
        try:
            ref = _sitk_reference(path).reshape(ours.pixels.shape)
        except RuntimeError:
            continue  # SimpleITK cannot read it: nothing to compare against
        got = _frames(ours)
        # GDCM inverts MONOCHROME1 too, so the comparison is direct for every photometry
        if syntax not in LOSSLESS:
            # two lossy decoders (libjpeg/openjpeg vs GDCM) may round differently
            assert np.mean(np.abs(got - ref)) <= 0.02 * max(np.ptp(ref), 1), path.name
        else:
            np.testing.assert_allclose(got, ref, atol=1e-3, err_msg=path.name)
        compared += 1
    assert compared >= 25


def test_multiframe_keeps_every_frame():
    ours = read_dicom_file(pydicom_data_dir() / "emri_small.dcm")
    _, raw = _pydicom_reference(pydicom_data_dir() / "emri_small.dcm")
    assert ours.pixels.shape == (10, 64, 64)
    np.testing.assert_array_equal(ours.pixels, raw.astype(np.float32))


def test_rgb_file_keeps_colour():
    ours = read_dicom_file(pydicom_data_dir() / "SC_rgb.dcm")
    _, raw = _pydicom_reference(pydicom_data_dir() / "SC_rgb.dcm")
    assert ours.is_colour and ours.pixels.shape == (1, 100, 100, 3)
    np.testing.assert_array_equal(ours.pixels[0], raw.astype(np.float32))


def test_monochrome1_is_inverted():
    path = pydicom_test_dir() / "dicomdirtests" / "77654033" / "CR1" / "6154"
    ours = read_dicom_file(path)
    ds, raw = _pydicom_reference(path)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    slope, intercept, bits = float(ds.RescaleSlope), float(ds.RescaleIntercept), int(ds.BitsStored)
    # unsigned 12-bit: stored range [0, 4095] maps to [intercept, 4095 * slope + intercept]
    expected = (intercept + (2**bits - 1) * slope + intercept) - (raw * slope + intercept)
    np.testing.assert_allclose(ours.pixels[0], expected, rtol=1e-5)


# ---------------------------------------------------------------- bad input


def _small_dataset(with_pixels: bool = True, syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    if with_pixels:
        ds.Rows, ds.Columns = 8, 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.arange(64, dtype=np.uint16).tobytes()
    return ds


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.dcm: empty file \(0 bytes\)"):
        read_dicom_file(path)


def test_text_file_named_dcm(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("this is a clinical note, not an image\n" * 20)
    with pytest.raises(ImageReadError, match=r"notes\.dcm: not a DICOM file"):
        read_dicom_file(path)


def test_truncated_pixel_data(tmp_path):
    path = tmp_path / "cut.dcm"
    data = (pydicom_test_dir() / "CT_small.dcm").read_bytes()
    path.write_bytes(data[: len(data) - 9000])
    with pytest.raises(ImageReadError, match=r"cut\.dcm: truncated pixel data"):
        read_dicom_file(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "head.dcm"
    path.write_bytes((pydicom_test_dir() / "CT_small.dcm").read_bytes()[:300])
    with pytest.raises(ImageReadError, match=r"head\.dcm: "):
        read_dicom_file(path)


def test_dicom_without_pixel_data(tmp_path):
    path = tmp_path / "report.dcm"
    _small_dataset(with_pixels=False).save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"report\.dcm: no pixel data"):
        read_dicom_file(path)


def test_unsupported_transfer_syntax(tmp_path):
    path = tmp_path / "exotic.dcm"
    ds = _small_dataset()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no decoder installed
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 40])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageReadError, match=r"exotic\.dcm: unsupported transfer syntax"):
        read_dicom_file(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.dcm: cannot open file"):
        read_dicom_file(tmp_path / "nope.dcm")


def test_source_file_not_modified(tmp_path):
    src = tmp_path / "ct.dcm"
    shutil.copy(pydicom_test_dir() / "CT_small.dcm", src)
    before = src.read_bytes()
    read_dicom_file(src)
    assert src.read_bytes() == before
