"""Dense outputs on a real CT series shipped by pydicom: NIfTI mask, DICOM SEG, boxes JSON.

Data: ``dicomdirtests/98892001/CT5N`` from pydicom's test files, a real CT series of five
16 × 16 single-frame slices, 2.5 mm apart, whose file names run against slice position;
``eCT_Supplemental.dcm`` from pydicom-data, a real Enhanced CT of two 512 × 512 frames;
``CT_small.dcm`` (pydicom), one CT slice.
"""

from __future__ import annotations

import json

import highdicom as hd
import nibabel
import numpy as np
import pydicom
import pytest

from tests.conftest import pydicom_data_dir, pydicom_test_dir
from transforms.dense_outputs import (
    boxes_to_world,
    check_boxes_in_extent,
    write_boxes_json,
    write_dicom_seg,
    write_nifti_mask,
)
from transforms.dicom_sources import load_dicom_with_sources
from transforms.image_loading import load_image
from transforms.read_errors import ImageReadError

CT_SERIES = pydicom_test_dir() / "dicomdirtests" / "98892001" / "CT5N"


@pytest.fixture(scope="module")
def series():
    return load_dicom_with_sources(CT_SERIES)


def _files_by_position():
    """The series' files sorted by hand: the slice normal of IOP (1,0,0, 0,1,0) is +z."""
    datasets = [pydicom.dcmread(f) for f in CT_SERIES.iterdir()]
    return sorted(datasets, key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_loader_returns_headers_in_volume_order(series):
    image, affine, datasets = series
    assert tuple(image.shape) == (1, 16, 16, 5)
    expected = [ds.SOPInstanceUID for ds in _files_by_position()]
    assert [ds.SOPInstanceUID for ds in datasets] == expected
    assert "PixelData" not in datasets[0]
    np.testing.assert_array_equal(affine, image.affine.numpy())


def test_loader_refuses_non_dicom(tmp_path):
    path = write_nifti_mask(np.zeros((4, 4, 2)), np.eye(4), tmp_path / "m.nii.gz")
    with pytest.raises(ImageReadError, match=r"m.nii.gz: not a DICOM image or series"):
        load_dicom_with_sources(path)


def test_nifti_mask_keeps_affine_and_shape(series, tmp_path):
    image, affine, _ = series
    mask = np.zeros(image.shape, dtype=np.int64)  # channel-first, as a network gives it
    mask[0, 2:5, 8:12, 3] = 2
    path = write_nifti_mask(mask, image.affine, tmp_path / "out" / "mask.nii.gz", image_shape=image.shape)
    back = nibabel.load(path)
    assert back.shape == (16, 16, 5)
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_allclose(back.affine, affine, atol=1e-6)
    assert int(back.header["sform_code"]) == 1
    data = np.asarray(back.dataobj)
    assert data.sum() == 2 * 3 * 4 and np.all(data[2:5, 8:12, 3] == 2)
    # the project's loader reads it back onto the same grid as the DICOM series
    reloaded = load_image(path)
    assert tuple(reloaded.shape) == tuple(image.shape)
    np.testing.assert_allclose(reloaded.affine.numpy(), affine, atol=1e-5)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mask.nii.gz"]


def test_nifti_mask_shape_mismatch_names_both_shapes(series, tmp_path):
    image, _, _ = series
    with pytest.raises(
        ValueError, match=r"mask shape \(16, 16, 4\) differs from the image shape \(16, 16, 5\)"
    ):
        write_nifti_mask(np.zeros((16, 16, 4)), image.affine, tmp_path / "m.nii.gz", image_shape=image.shape)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [(np.full((2, 2, 2), 0.5), "integer labels"), (np.full((2, 2, 2), 300), r"\[0, 255\]")],
)
def test_nifti_mask_refuses_non_labels(values, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        write_nifti_mask(values, np.eye(4), tmp_path / "m.nii.gz")
    assert list(tmp_path.iterdir()) == []


def test_dicom_seg_marks_the_right_instance_and_pixels(series, tmp_path):
    image, _, datasets = series
    mask = np.zeros(image.shape[1:], dtype=bool)
    mask[2:5, 8:12, 3] = True  # x = columns 2..4, y = rows 8..11, fourth slice from the bottom
    shuffled = [datasets[i] for i in (2, 0, 4, 1, 3)]  # not in slice order: the writer orders them
    path = write_dicom_seg(mask, shuffled, tmp_path / "seg.dcm", segment_label="tumour")

    raw = pydicom.dcmread(path)
    target = _files_by_position()[3]
    assert raw.Modality == "SEG" and raw.SegmentationType == "BINARY"
    assert raw.ReferencedSeriesSequence[0].SeriesInstanceUID == target.SeriesInstanceUID
    assert raw.NumberOfFrames == 1  # empty frames omitted
    frame = raw.PerFrameFunctionalGroupsSequence[0]
    source = frame.DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == target.SOPInstanceUID
    rows, cols = np.nonzero(raw.pixel_array)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (8, 11, 2, 4)
    segment = raw.SegmentSequence[0]
    assert segment.SegmentLabel == "tumour"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "medglass"

    seg = hd.seg.segread(path)
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[ds.SOPInstanceUID for ds in _files_by_position()],
        segment_numbers=[1],
    )
    expected = np.transpose(mask, (2, 1, 0))[..., None]  # (slices, rows, cols, segments)
    np.testing.assert_array_equal(pixels.astype(bool), expected)


def test_dicom_seg_refuses_slices_of_different_orientations(tmp_path):
    """MR700 (pydicom): seven radial MR slices, each in its own plane: no volume a SEG can reference."""
    folder = pydicom_test_dir() / "dicomdirtests" / "98892003" / "MR700"
    image, _, datasets = load_dicom_with_sources(folder)
    assert len({tuple(ds.ImageOrientationPatient) for ds in datasets}) == 7
    with pytest.raises(
        ValueError, match=r"seg.dcm: cannot build a DICOM SEG from .*MR700.*shared orientation"
    ):
        write_dicom_seg(np.ones(image.shape[1:], dtype=np.uint8), datasets, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


def test_dicom_seg_shape_mismatch_writes_nothing(series, tmp_path):
    _, _, datasets = series
    with pytest.raises(ValueError, match=r"mask shape \(16, 16\) differs from the image shape \(16, 16, 5\)"):
        write_dicom_seg(np.ones((16, 16)), datasets, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


def test_dicom_seg_single_image(tmp_path):
    image, _, datasets = load_dicom_with_sources(pydicom_test_dir() / "CT_small.dcm")
    mask = np.zeros(image.shape[1:], dtype=np.uint8)  # (x, y) = (columns, rows)
    mask[10:20, 100:110] = 1
    seg = hd.seg.segread(write_dicom_seg(mask, datasets, tmp_path / "seg.dcm"))
    rows, cols = np.nonzero(seg.pixel_array)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (100, 109, 10, 19)
    ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == datasets[0].SOPInstanceUID


def test_boxes_to_world_by_hand(series):
    _, affine, _ = series
    # CT5N: spacing 0.488281 mm, LPS→RAS flips x and y, origin (72.2, 143.0, -1.2375) RAS
    world = boxes_to_world([[2, 8, 1, 5, 12, 3]], affine)[0]
    s = 0.488281
    expected_min = [72.199997 - 5 * s, 143.0 - 12 * s, -1.2375 + 1 * 2.5]
    expected_max = [72.199997 - 2 * s, 143.0 - 8 * s, -1.2375 + 3 * 2.5]
    np.testing.assert_allclose(world[:3], expected_min, atol=1e-4)
    np.testing.assert_allclose(world[3:], expected_max, atol=1e-4)


def test_boxes_to_world_2d_box_in_3d_world():
    affine = np.array([[0.5, 0, 0, 10], [0, 2.0, 0, 20], [0, 0, 1, 30], [0, 0, 0, 1]])
    np.testing.assert_allclose(boxes_to_world([[0, 1, 4, 3]], affine), [[10, 22, 30, 12, 26, 30]])


def test_boxes_json(series, tmp_path):
    image, affine, _ = series
    boxes = np.array([[2, 8, 1, 5, 12, 3], [0, 0, 0, 16, 16, 5]], dtype=np.float32)
    path = write_boxes_json(
        boxes,
        [0.9, 0.4],
        image.affine,
        tmp_path / "boxes.json",
        labels=[0, 0],
        source="CT5N",
        image_shape=image.shape,
    )
    document = json.loads(path.read_text())
    assert document["image_shape"] == [16, 16, 5] and document["source"] == "CT5N"
    np.testing.assert_allclose(document["affine"], affine)
    first, whole = document["boxes"]
    assert first["score"] == pytest.approx(0.9) and first["label"] == 0
    np.testing.assert_allclose(first["size_mm"], [3 * 0.488281, 4 * 0.488281, 5.0], atol=1e-4)
    np.testing.assert_allclose(first["centre"], np.add(first["world_min"], first["world_max"]) / 2)
    # the whole-image box spans the extent: 16 voxels of 0.488 mm, 5 slices of 2.5 mm
    np.testing.assert_allclose(whole["size_mm"], [16 * 0.488281, 16 * 0.488281, 12.5], atol=1e-4)


def test_boxes_outside_extent_are_refused(series, tmp_path):
    image, _, _ = series
    with pytest.raises(
        ValueError,
        match=r"box 1 \[0.0, 0.0, 0.0, 4.0, 4.0, 6.0\] lies outside the image extent \[0, \[16, 16, 5\]\]",
    ):
        write_boxes_json(
            [[0, 0, 0, 2, 2, 2], [0, 0, 0, 4, 4, 6]],
            [0.5, 0.5],
            image.affine,
            tmp_path / "b.json",
            image_shape=image.shape,
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="lower corner above"):
        check_boxes_in_extent([[3, 0, 2, 2]], (8, 8))
    with pytest.raises(ValueError, match=r"scores must be 1 finite"):
        write_boxes_json([[0, 0, 2, 2]], [0.1, 0.2], np.eye(4), tmp_path / "b.json", image_shape=(8, 8))


def test_failed_write_leaves_nothing_behind(series, tmp_path, monkeypatch):
    image, _, _ = series

    def half_write(img, filename):
        with open(filename, "wb") as stream:
            stream.write(b"\x5c\x01\x00\x00")  # the first bytes of a NIfTI header, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nibabel, "save", half_write)
    (tmp_path / "mask.nii.gz").write_bytes(b"previous")
    with pytest.raises(OSError, match="No space left"):
        write_nifti_mask(np.zeros(image.shape), image.affine, tmp_path / "mask.nii.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]
    assert (tmp_path / "mask.nii.gz").read_bytes() == b"previous"


def test_dicom_seg_on_enhanced_multiframe_ct_from_pydicom_data(tmp_path):
    """pydicom-data's eCT_Supplemental.dcm: a real Enhanced CT of two 512 × 512 frames."""
    image, _, datasets = load_dicom_with_sources(pydicom_data_dir() / "eCT_Supplemental.dcm")
    assert tuple(image.shape) == (1, 512, 512, 2)
    mask = np.zeros(image.shape[1:], dtype=np.uint8)
    mask[300:310, 40:45, 1] = 1  # x = columns 300..309, y = rows 40..44, second frame
    raw = pydicom.dcmread(write_dicom_seg(mask, datasets, tmp_path / "seg.dcm"))
    assert raw.NumberOfFrames == 1
    source = raw.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == datasets[0].SOPInstanceUID
    assert int(source.ReferencedFrameNumber) == 2
    rows, cols = np.nonzero(raw.pixel_array)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (40, 44, 300, 309)


def test_dicom_seg_that_highdicom_refuses_names_the_file(tmp_path):
    """emri_small.dcm (pydicom-data): an Enhanced MR without a Frame of Reference UID."""
    _, _, datasets = load_dicom_with_sources(pydicom_data_dir() / "emri_small.dcm")
    mask = np.ones((64, 64, 10), dtype=np.uint8)
    with pytest.raises(
        ValueError, match=r"seg.dcm: cannot build a DICOM SEG from .*emri_small.dcm .*Frame of Reference"
    ):
        write_dicom_seg(mask, datasets, tmp_path / "seg.dcm")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("image_shape", [None, (64, 48), (1, 64, 48)])
def test_nifti_mask_channel_first_2d(image_shape, tmp_path):
    mask = np.zeros((1, 64, 48), dtype=np.uint8)
    mask[0, 10, 20] = 1
    affine = np.diag([0.5, 0.7, 1.0, 1.0])
    back = nibabel.load(write_nifti_mask(mask, affine, tmp_path / "m.nii.gz", image_shape=image_shape))
    assert back.shape == (64, 48) and np.asarray(back.dataobj)[10, 20] == 1
    np.testing.assert_allclose(back.affine, affine)
