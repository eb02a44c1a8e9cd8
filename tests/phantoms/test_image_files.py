"""Tests for phantoms/image_files.py and the anatomy loader: DICOM validity and rescale, PNG depth, errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_modality_lut

from phantoms import PhantomConfig, anatomy, generate_cohort

TOL = 1.0 / 65535 + 1e-7


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 2D and 3D cohorts written as NIfTI (float32 reference), DICOM and PNG."""
    out = {}
    for kind, size, fmts in (("brain2d", 64, ("nifti", "dicom", "png")), ("brain3d", 32, ("nifti", "dicom"))):
        for fmt in fmts:
            folder = tmp_path_factory.mktemp(f"{kind}-{fmt}")
            generate_cohort(
                PhantomConfig(kind=kind, size=size, n=3, seed=9, image_format=fmt), folder, progress=False
            )
            out[f"{kind}-{fmt}"] = folder
    return out


def test_dicom_2d_rescales_to_the_float_image(pairs: dict[str, Path]) -> None:
    for i in range(3):
        ds = pydicom.dcmread(pairs["brain2d-dicom"] / f"images/p{i:05d}.dcm")
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.PatientID == f"p{i:05d}" and ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.pixel_array.dtype == np.uint16 and ds.Modality == "MR"
        decoded = apply_modality_lut(ds.pixel_array, ds).T  # rows are y: back to [x, y]
        reference = np.asarray(nib.load(pairs["brain2d-nifti"] / f"images/p{i:05d}.nii.gz").dataobj)
        assert decoded.shape == reference.shape == (64, 64)
        assert np.abs(decoded - reference).max() <= TOL
        png = np.asarray(Image.open(pairs["brain2d-png"] / f"images/p{i:05d}.png")).T / 65535.0
        assert np.abs(png - reference).max() <= TOL


def test_png_is_16_bit_grey(pairs: dict[str, Path]) -> None:
    with Image.open(pairs["brain2d-png"] / "images/p00000.png") as im:
        assert im.mode == "I;16" and im.size == (64, 64)
    with Image.open(pairs["brain2d-png"] / "masks/p00000.png") as im:
        assert im.mode == "L"


def test_dicom_3d_is_a_valid_series(pairs: dict[str, Path]) -> None:
    records = json.loads((pairs["brain3d-dicom"] / "datalist.json").read_text())
    rec = (records["training"] + records["validation"] + records["test"])[0]
    files = sorted((pairs["brain3d-dicom"] / rec["image"]).glob("*.dcm"))
    assert len(files) == 32
    slices = [pydicom.dcmread(f) for f in files]
    assert len({ds.SeriesInstanceUID for ds in slices}) == 1
    assert len({ds.StudyInstanceUID for ds in slices}) == 1
    assert len({ds.SOPInstanceUID for ds in slices}) == 32
    assert [int(ds.InstanceNumber) for ds in slices] == list(range(1, 33))
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in slices])
    thickness = float(slices[0].SliceThickness)
    np.testing.assert_allclose(np.diff(z), thickness, rtol=1e-6)
    for ds in slices:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([thickness, thickness])
        assert ds.PatientID == rec["id"] and ds.PatientSex == rec["attributes"]["sex"]
    volume = np.stack([apply_modality_lut(ds.pixel_array, ds).T for ds in slices], axis=-1)
    nifti = nib.load(pairs["brain3d-nifti"] / f"images/{rec['id']}.nii.gz")
    assert np.abs(volume - np.asarray(nifti.dataobj)).max() <= TOL
    # the series' geometry agrees with the NIfTI affine (LPS position = RAS with x, y negated)
    ras_origin = nifti.affine[:3, 3]
    np.testing.assert_allclose(
        [float(v) for v in slices[0].ImagePositionPatient], ras_origin * [-1, -1, 1], atol=1e-6
    )


def test_dicom_3d_reads_as_a_volume_with_simpleitk(pairs: dict[str, Path]) -> None:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(pairs["brain3d-dicom"] / "images/p00000"))
    reader.SetFileNames(names)
    image = reader.Execute()
    assert image.GetSize() == (32, 32, 32)
    nifti = nib.load(pairs["brain3d-nifti"] / "images/p00000.nii.gz")
    np.testing.assert_allclose(image.GetSpacing(), nib.affines.voxel_sizes(nifti.affine), rtol=1e-6)
    array = sitk.GetArrayFromImage(image).transpose(2, 1, 0)  # sitk gives [z, y, x]
    assert np.abs(array - np.asarray(nifti.dataobj)).max() <= TOL


def test_nifti_affine_is_lps_ordered_mm(pairs: dict[str, Path]) -> None:
    img = nib.load(pairs["brain3d-nifti"] / "images/p00000.nii.gz")
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    # the brain's bounding box (~181 mm) plus margins spans the 32-voxel cube
    assert 190 < 32 * nib.affines.voxel_sizes(img.affine)[0] < 230
    assert img.get_data_dtype() == np.float32


def test_missing_template_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    monkeypatch.setattr(anatomy, "template_paths", lambda: {"t1": missing})
    with pytest.raises(FileNotFoundError, match="mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz: MNI152"):
        anatomy.load_mni_template.__wrapped__()
