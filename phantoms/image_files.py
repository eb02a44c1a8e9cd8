"""Deterministic PNG, NIfTI and DICOM writers for ``[x, y(, z)]`` float images in [0, 1].

- PNG: 16-bit grey (``I;16``) for images, 8-bit for masks, written as ``Image.fromarray(arr.T)``
  so MONAI's ``PILReader`` (which transposes) gives the ``[x, y]`` array back.
- NIfTI: float32 images / uint8 masks, gzip with ``mtime=0`` so equal arrays give equal bytes.
- DICOM: uint16 MONOCHROME2 MR images with ``RescaleSlope = 1/65535``, Explicit VR Little Endian,
  UIDs derived from the given entropy, fixed dates; a 3D volume is a series folder with one
  file per axial slice.

Written by hand because nibabel's ``.nii.gz`` writer embeds the current time and no library
builds a minimal, valid DICOM from an array.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "DicomSubject",
    "to_uint16",
    "write_dicom_series",
    "write_dicom_slice",
    "write_nifti",
    "write_png_image",
    "write_png_mask",
]

_UINT16_MAX = 65535
_RESCALE_SLOPE = "1.525902189e-05"  # 1 / 65535 as a DICOM decimal string (<= 16 characters)
_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
_FIXED_DATE = "20000101"  # no dates from the clock: files must be reproducible


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Map [0, 1] floats to uint16 ``round(v * 65535)``."""
    return np.round(np.clip(image, 0.0, 1.0) * _UINT16_MAX).astype(np.uint16)


def write_png_image(path: Path, image: np.ndarray) -> None:
    """Write a 2D ``[x, y]`` float image as a 16-bit grey PNG."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(to_uint16(image).T)).save(path, format="PNG")


def write_png_mask(path: Path, mask: np.ndarray) -> None:
    """Write a 2D ``[x, y]`` label mask as an 8-bit PNG (values kept: 0/1, or instance ids up to 255)."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(mask.astype(np.uint8).T)).save(path, format="PNG")


def write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    """Write a ``.nii.gz`` whose bytes depend only on the array and affine.

    Args:
        path: destination (``.nii.gz``).
        array: ``[x, y(, z)]``; float arrays are stored as float32, others keep their dtype.
        affine: 4x4 voxel-to-RAS matrix (for a 2D array, of the slice).
    """
    import nibabel as nib

    data = array.astype(np.float32) if np.issubdtype(array.dtype, np.floating) else array
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    Path(path).write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


@dataclass(frozen=True)
class DicomSubject:
    """Identity and acquisition metadata written into every DICOM file of one image.

    Attributes:
        patient_id: the phantom id (also the patient name).
        sex: ``"F"`` or ``"M"``.
        age_years: age, written as PatientAge ``"045Y"``.
        site: institution name.
        scanner: ``"Vendor-Model"``; the part before the first ``-`` becomes the manufacturer.
        uid_entropy: strings that determine every UID (config seed, kind, size, id ...).
    """

    patient_id: str
    sex: str
    age_years: float
    site: str
    scanner: str
    uid_entropy: tuple[str, ...]


def _uid(subject: DicomSubject, *extra: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[*subject.uid_entropy, *extra])


def _dataset(
    subject: DicomSubject,
    pixels: np.ndarray,
    spacing: float,
    position_lps: np.ndarray,
    number: int,
    n_slices: int,
) -> Dataset:
    """One MR slice dataset; ``pixels`` is ``[x, y]`` uint16 (stored as rows = y)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    sop_uid = _uid(subject, "sop", str(number))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "MEDGLASS_PHANTOM"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = _MR_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _FIXED_DATE
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "000000"
    ds.AccessionNumber = ""
    ds.Modality = "MR"
    ds.Manufacturer = subject.scanner.split("-", 1)[0]
    ds.ManufacturerModelName = subject.scanner.split("-", 1)[-1]
    ds.InstitutionName = f"Phantom site {subject.site}"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "medglass synthetic brain phantom"
    ds.SeriesDescription = "T1w phantom"
    ds.PatientName = subject.patient_id
    ds.PatientID = subject.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = subject.sex
    ds.PatientAge = f"{min(int(subject.age_years), 999):03d}Y"
    ds.BodyPartExamined = "BRAIN"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "3D" if n_slices > 1 else "2D"
    ds.SliceThickness = f"{spacing:.10g}"
    ds.SpacingBetweenSlices = f"{spacing:.10g}"
    ds.StudyInstanceUID = _uid(subject, "study")
    ds.SeriesInstanceUID = _uid(subject, "series")
    ds.FrameOfReferenceUID = _uid(subject, "frame")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [f"{v:.10g}" for v in position_lps]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = f"{position_lps[2]:.10g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[0])
    ds.PixelSpacing = [f"{spacing:.10g}", f"{spacing:.10g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = _RESCALE_SLOPE
    ds.RescaleType = "US"
    ds.WindowCenter = "0.5"
    ds.WindowWidth = "1"
    ds.PixelData = np.ascontiguousarray(pixels.T).astype("<u2").tobytes()
    return ds


def _lps_origin(affine: np.ndarray) -> tuple[np.ndarray, float]:
    """LPS position of voxel (0, 0, 0) and the voxel size, from a voxel-to-RAS affine."""
    origin = affine[:3, 3] * np.array([-1.0, -1.0, 1.0])
    return origin, float(np.linalg.norm(affine[:3, 0]))


def write_dicom_slice(path: Path, image: np.ndarray, affine: np.ndarray, subject: DicomSubject) -> None:
    """Write a 2D ``[x, y]`` image as one DICOM file.

    Args:
        path: destination ``.dcm``.
        image: float image in [0, 1].
        affine: voxel-to-RAS affine of the slice (x and y axes pointing left and posterior).
        subject: identity and UID entropy.
    """
    origin, spacing = _lps_origin(affine)
    ds = _dataset(subject, to_uint16(image), spacing, origin, 1, 1)
    ds.save_as(path, enforce_file_format=True)


def write_dicom_series(folder: Path, volume: np.ndarray, affine: np.ndarray, subject: DicomSubject) -> None:
    """Write a 3D ``[x, y, z]`` volume as a series folder, one file per axial slice.

    Files are ``slice_000.dcm``, ... (z ascending, InstanceNumber from 1); every file shares the
    SeriesInstanceUID and carries its ImagePositionPatient.

    Args:
        folder: destination folder (created).
        volume: float volume in [0, 1].
        affine: voxel-to-RAS affine of the volume.
        subject: identity and UID entropy.
    """
    folder.mkdir(parents=True, exist_ok=True)
    origin, spacing = _lps_origin(affine)
    pixels = to_uint16(volume)
    for k in range(volume.shape[2]):
        position = origin + np.array([0.0, 0.0, k * spacing])
        ds = _dataset(subject, pixels[:, :, k], spacing, position, k + 1, volume.shape[2])
        ds.save_as(folder / f"slice_{k:03d}.dcm", enforce_file_format=True)
