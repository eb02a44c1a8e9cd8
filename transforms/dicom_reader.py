"""Read one DICOM file into a float pixel array, or say precisely why it cannot be read.

Why not MONAI's ``PydicomReader`` alone: it stacks series by InstanceNumber only, does not
invert MONOCHROME1, has no fallback for transfer syntaxes pydicom cannot decode, copies the
whole header (patient identifiers included) into the metadata, and raises library errors
that do not name the file. This module keeps pydicom (with the pylibjpeg plugins) as the
decoder, falls back to SimpleITK (GDCM) for what pydicom cannot decode, and reports every
failure as :class:`~transforms.read_errors.ImageReadError`.

Arrays returned here are in DICOM order ``(frames, rows, cols[, samples])``; the
conversion to MONAI's channel-first ``(C, x, y[, z])`` layout happens in
:mod:`transforms.dicom_series`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from transforms.read_errors import ImageReadError

__all__ = [
    "DicomImage",
    "read_dicom_dataset",
    "decode_dicom_pixels",
    "read_dicom_file",
    "quiet_native_output",
]

_TRUNCATION_HINTS = ("less than expected", "doesn't match the expected", "does not match the expected")


@dataclass
class DicomImage:
    """Pixels and geometry of one DICOM file.

    Attributes:
        path: the file read.
        dataset: the pydicom dataset without its pixel data loaded into memory twice.
        pixels: float32 array ``(frames, rows, cols[, 3])`` after the modality LUT
            (RescaleSlope/Intercept), MONOCHROME1 inversion and palette expansion.
        decoder: ``"pydicom"`` or ``"simpleitk"``.
    """

    path: str
    dataset: Dataset
    pixels: np.ndarray
    decoder: str

    @property
    def is_colour(self) -> bool:
        """True when the pixels carry 3 colour samples per pixel."""
        return self.pixels.ndim == 4


def read_dicom_dataset(path: str | PathLike, stop_before_pixels: bool = False) -> Dataset:
    """Parse a DICOM file's header, accepting files without the 128-byte preamble.

    Args:
        path: the file.
        stop_before_pixels: parse the header only (fast; for grouping series).

    Returns:
        The dataset. Files without file meta get a transfer syntax matching how they
        were parsed, so their pixels can be decoded.

    Raises:
        ImageReadError: empty file, not DICOM, or a header that cannot be parsed.
    """
    path = str(path)
    try:
        size = os.path.getsize(path)
    except OSError as err:
        raise ImageReadError(path, f"cannot open file ({err.strerror or err})") from err
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            ds = _read_without_preamble(path, stop_before_pixels)
        except Exception as err:  # pydicom raises many types on a damaged header
            raise ImageReadError(path, f"unreadable DICOM header ({type(err).__name__}: {err})") from err
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        implicit, little = getattr(ds, "original_encoding", (True, True))
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        if not little:
            syntax = ExplicitVRBigEndian
        ds.file_meta = getattr(ds, "file_meta", None) or pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _read_without_preamble(path: str, stop_before_pixels: bool) -> Dataset:
    """Parse a file that lacks the DICM preamble; refuse it unless it looks like DICOM."""
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
        keys = list(ds.keys())
    except Exception as err:
        raise ImageReadError(
            path, "not a DICOM file (no DICM preamble and no parsable DICOM elements)"
        ) from err
    # A forced read of text or binary junk yields few elements with nonsense tags; a real
    # preamble-less DICOM object carries identifying elements of groups 0008/0020/0028.
    # Groups: 0008 identification, 0010 patient, 0018 acquisition, 0020 relationship,
    # 0028 image pixel, 300A/3006 radiotherapy, 7FE0 pixel data.
    groups = {0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x300A, 0x3006, 0x7FE0}
    has_known = sum(1 for tag in keys if tag.group in groups) >= 2
    if not keys or not has_known:
        raise ImageReadError(path, "not a DICOM file (no DICM preamble and no DICOM image elements)")
    return ds


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what C decoders (libjpeg, openjpeg, GDCM) print straight to fds 1 and 2.

    Their messages duplicate the exception we turn into a reject reason and would break
    progress bars; Python-level output is flushed first and restored afterwards.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
    except (OSError, ValueError, AttributeError):  # no real fds (e.g. embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def decode_dicom_pixels(ds: Dataset, path: str | PathLike) -> tuple[np.ndarray, str]:
    """Decode, rescale and normalise the photometric interpretation of a dataset's pixels.

    Args:
        ds: a dataset read with its pixel data.
        path: its file, for error messages and the SimpleITK fallback.

    Returns:
        ``(pixels, decoder)``: float32 ``(frames, rows, cols[, 3])`` and the decoder used.

    Raises:
        ImageReadError: no pixel data, truncated pixel data, or no decoder for the
            transfer syntax.
    """
    path = str(path)
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or (str(sop) if sop else "unknown SOP class")
        raise ImageReadError(path, f"no pixel data (a DICOM object without an image: {kind})")
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        with warnings.catch_warnings(), quiet_native_output():
            warnings.simplefilter("ignore")
            raw = ds.pixel_array
        decoder = "pydicom"
    except Exception as err:  # pydicom: ValueError, RuntimeError, NotImplementedError, ...
        message = " ".join(str(err).split())
        if any(hint in message for hint in _TRUNCATION_HINTS):
            raise ImageReadError(path, f"truncated pixel data ({message[:160]})") from err
        raw, sitk_error = _decode_with_simpleitk(path)
        if raw is None:
            name = getattr(syntax, "name", str(syntax))
            what = (
                f"unsupported transfer syntax {name} ({syntax}): no installed decoder could read it"
                if getattr(syntax, "is_compressed", False)
                else "pixel data cannot be decoded"
            )
            raise ImageReadError(
                path, f"{what} (pydicom: {message[:120]}; SimpleITK: {sitk_error[:80]})"
            ) from err
        return _as_frames(raw.astype(np.float32, copy=False), colour_last=raw.ndim == 4), "simpleitk"
    pixels = _to_float(raw, ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    colour = _samples(ds) == 3 or photometric == "PALETTE COLOR"
    return _as_frames(pixels, colour_last=colour), decoder


def _samples(ds: Dataset) -> int:
    return int(ds.get("SamplesPerPixel", 1) or 1)


def _to_float(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """Apply palette expansion, the modality LUT and MONOCHROME1 inversion."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(raw, ds)
        if int(ds.get("BitsAllocated", 8) or 8) == 8 and rgb.max() > 255:
            rgb = rgb // 256  # 16-bit LUT entries for an 8-bit image: keep 8-bit range, as GDCM does
        return rgb.astype(np.float32)
    if _samples(ds) != 1:
        return raw.astype(np.float32)  # pydicom already converted YBR to RGB
    pixels = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    if photometric == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16) or 16)
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        lo_r, hi_r = np.asarray(apply_modality_lut(np.array([lo, hi]), ds), dtype=np.float64)
        pixels = (lo_r + hi_r - pixels).astype(np.float32)
    return pixels


def _as_frames(pixels: np.ndarray, colour_last: bool) -> np.ndarray:
    """Give every array a leading frame axis: ``(frames, rows, cols[, 3])``."""
    spatial_ndim = pixels.ndim - (1 if colour_last else 0)
    if spatial_ndim == 2:
        pixels = pixels[None]
    return np.ascontiguousarray(pixels)


def _decode_with_simpleitk(path: str) -> tuple[np.ndarray | None, str]:
    """Decode with SimpleITK/GDCM (which applies rescale itself); ``(None, error)`` on failure."""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        with quiet_native_output():
            image = sitk.ReadImage(path)
        array = sitk.GetArrayFromImage(image)  # (frames, rows, cols[, comps])
    except Exception as err:
        return None, " ".join(str(err).split()[-12:])
    return array, ""


def read_dicom_file(path: str | PathLike) -> DicomImage:
    """Read one DICOM file: header checks, decoding, rescale and photometric handling.

    Args:
        path: a DICOM file (single- or multi-frame).

    Returns:
        A :class:`DicomImage` whose ``pixels`` are float32 ``(frames, rows, cols[, 3])``.

    Raises:
        ImageReadError: naming the file and the reason (empty, not DICOM, no pixel data,
            truncated, unsupported transfer syntax, ...).

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> read_dicom_file(get_testdata_file("CT_small.dcm")).pixels.shape
        (1, 128, 128)
    """
    path = str(Path(path))
    ds = read_dicom_dataset(path)
    pixels, decoder = decode_dicom_pixels(ds, path)
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows and cols and tuple(pixels.shape[1:3]) != (int(rows), int(cols)):
        raise ImageReadError(
            path, f"decoded size {pixels.shape[1:3]} differs from header Rows/Columns {(rows, cols)}"
        )
    if "PixelData" in ds:
        del ds.PixelData  # keep the header, free the bytes
    return DicomImage(path=path, dataset=ds, pixels=pixels, decoder=decoder)
