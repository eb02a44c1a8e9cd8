"""load_image across formats: shipped NIfTI/DICOM files, generated PNG/JPEG/TIFF/npz, bad inputs."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from PIL import Image

from tests.conftest import nibabel_data_dir, pydicom_test_dir
from transforms.image_loading import LoadMedicalImaged, detect_format, load_image
from transforms.read_errors import ImageReadError


@pytest.mark.parametrize("name", ["anatomical.nii", "example4d.nii.gz", "standard.nii.gz"])
def test_nifti_matches_nibabel(name):
    path = nibabel_data_dir() / name
    ref = nib.load(path)
    image = load_image(path)
    assert isinstance(image, MetaTensor)
    data = np.asarray(ref.dataobj, dtype=np.float32)
    expected = data[None] if data.ndim == 3 else np.moveaxis(data, -1, 0)
    np.testing.assert_allclose(image.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(image.affine.numpy(), ref.affine, atol=1e-5)


def test_dicom_file_is_transposed_to_monai_order():
    import pydicom
    from pydicom.pixels import apply_modality_lut

    path = pydicom_test_dir() / "CT_small.dcm"
    ds = pydicom.dcmread(path)
    image = load_image(path)
    assert image.shape == (1, 128, 128)
    np.testing.assert_allclose(image[0].numpy(), apply_modality_lut(ds.pixel_array, ds).T)
    assert "PatientName" not in image.meta and "PatientID" not in image.meta


def test_png_16bit_and_rgb_to_grey(tmp_path):
    grey = (np.arange(20 * 30).reshape(20, 30) * 50).astype(np.uint16)  # rows=20, cols=30
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image = load_image(tmp_path / "grey.png")
    assert image.shape == (1, 30, 20)
    np.testing.assert_array_equal(image[0].numpy(), grey.T.astype(np.float32))

    rgb = np.zeros((8, 10, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 200, 50
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert load_image(tmp_path / "rgb.png").shape == (3, 10, 8)
    one = load_image(tmp_path / "rgb.png", channels=1)
    assert one.shape == (1, 10, 8)
    np.testing.assert_allclose(one.numpy(), 0.299 * 100 + 0.587 * 200 + 0.114 * 50, rtol=1e-5)


@pytest.mark.parametrize("suffix", [".jpg", ".tif"])
def test_jpeg_and_tiff(tmp_path, suffix):
    array = np.tile(np.linspace(0, 255, 16, dtype=np.uint8), (12, 1))
    Image.fromarray(array).save(tmp_path / f"im{suffix}")
    image = load_image(tmp_path / f"im{suffix}")
    assert image.shape == (1, 16, 12)
    assert np.abs(image[0].numpy() - array.T).mean() < 3  # JPEG is lossy


def test_medmnist_npz(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", train_images=images, train_labels=np.arange(5)[:, None])
    image = load_image(f"{tmp_path / 'mnist.npz'}#train/3")
    np.testing.assert_array_equal(image[0].numpy(), images[3].T)
    with pytest.raises(ImageReadError, match="index 9 out of range"):
        load_image(f"{tmp_path / 'mnist.npz'}#train/9")
    with pytest.raises(ImageReadError, match="no 'test' split"):
        load_image(f"{tmp_path / 'mnist.npz'}#test/0")
    with pytest.raises(ImageReadError, match="address one as"):
        load_image(tmp_path / "mnist.npz")


def test_broken_nifti_header(tmp_path):
    data = (nibabel_data_dir() / "anatomical.nii").read_bytes()
    broken = bytearray(data)
    broken[0:4] = (999).to_bytes(4, "little")  # sizeof_hdr must be 348
    broken[40:56] = b"\xff" * 16  # nonsense dimensions
    (tmp_path / "broken.nii").write_bytes(bytes(broken))
    with pytest.raises(ImageReadError, match=r"broken\.nii: unreadable NIfTI file"):
        load_image(tmp_path / "broken.nii")


def test_truncated_nifti_gz(tmp_path):
    raw = gzip.compress((nibabel_data_dir() / "anatomical.nii").read_bytes())
    (tmp_path / "cut.nii.gz").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ImageReadError, match=r"cut\.nii\.gz: unreadable NIfTI file"):
        load_image(tmp_path / "cut.nii.gz")


def test_zero_byte_png_and_missing_and_unsupported(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty\.png: empty file"):
        load_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.nii")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageReadError, match="unsupported file type '.txt'"):
        load_image(tmp_path / "notes.txt")


def test_wrong_channel_count_is_an_error(tmp_path):
    Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "g.png")
    with pytest.raises(ImageReadError, match="has 1 channel"):
        load_image(tmp_path / "g.png", channels=3)
    with pytest.raises(ValueError, match="channels must be None or >= 1"):
        load_image(tmp_path / "g.png", channels=0)


def test_detect_format_and_dict_twin(tmp_path):
    assert detect_format(pydicom_test_dir() / "CT_small.dcm") == "dicom"
    assert detect_format(nibabel_data_dir() / "anatomical.nii") == "nifti"
    assert detect_format(pydicom_test_dir()) == "dicom_series"
    record = {"image": str(pydicom_test_dir() / "MR_small.dcm"), "label": 1}
    out = LoadMedicalImaged(keys="image")(record)
    assert isinstance(out["image"], torch.Tensor) and out["label"] == 1 and out["image"].shape == (1, 64, 64)
