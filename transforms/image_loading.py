"""Load any supported medical image into a channel-first MONAI ``MetaTensor``.

Formats: DICOM files (single- and multi-frame, compressed), DICOM series (a folder or a
list of slice files), NIfTI (MONAI's ``NibabelReader``), PNG/JPEG/TIFF/BMP (MONAI's
``PILReader``) and images inside MedMNIST ``.npz`` archives (``"file.npz#train/3"``).
Every failure is an :class:`~transforms.read_errors.ImageReadError` naming the file and
the reason. Output layout is MONAI's: ``(C, x, y[, z])`` with the affine in the metadata.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from transforms.dicom_series import read_dicom, read_dicom_series
from transforms.keys import Keys
from transforms.medmnist_npz import load_npz_image, parse_medmnist_reference
from transforms.read_errors import ImageReadError

__all__ = [
    "MIN_IMAGE_SIDE",
    "check_image_size",
    "ImageSource",
    "detect_format",
    "file_suffix",
    "has_dicom_magic",
    "load_image",
    "LoadMedicalImage",
    "LoadMedicalImaged",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz", ".hdr", ".img", ".mgz")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

ImageSource = str | PathLike | Sequence[str | PathLike]

MIN_IMAGE_SIDE = 2
"""Fewest pixels along at least two axes for a file to count as an image: fewer is a point or a
line (a 1 × 1 PNG). What a model needs is more, and checked where an image meets the model."""


def check_image_size(
    path: str | PathLike, spatial_shape: Sequence[int], min_side: int = MIN_IMAGE_SIDE
) -> None:
    """Refuse an image too small to be one: fewer than two axes of ``min_side`` pixels.

    Args:
        path: the file (named in the error).
        spatial_shape: its spatial shape, without the channel axis.
        min_side: pixels an axis needs to count.

    Raises:
        ImageReadError: ``"<path>: image of 1 x 1 pixels is too small: ..."``.

    Example:
        >>> check_image_size("scan.png", (64, 64, 1))
        >>> check_image_size("dot.png", (1, 1))
        Traceback (most recent call last):
        ...
        transforms.read_errors.ImageReadError: dot.png: image of 1 x 1 pixels is too small: at least 2 pixels along two axes are needed
    """
    if sum(int(s) >= min_side for s in spatial_shape) < 2:
        raise ImageReadError(
            path,
            f"image of {' x '.join(str(int(s)) for s in spatial_shape)} pixels is too small: at least {min_side} "
            "pixels along two axes are needed",
        )


def file_suffix(path: str | PathLike) -> str:
    """Lower-case suffix of a path, with ``.nii.gz`` kept whole."""
    lower = str(path).lower()
    return ".nii.gz" if lower.endswith(".nii.gz") else Path(lower).suffix


def has_dicom_magic(path: str | PathLike) -> bool:
    """True when the file carries the ``DICM`` marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def detect_format(source: ImageSource) -> str:
    """Name the reader a source needs.

    Args:
        source: a file, a folder (DICOM series), a list of slice files, or an
            ``"archive.npz#split/index"`` reference.

    Returns:
        One of ``"dicom"``, ``"dicom_series"``, ``"nifti"``, ``"pil"``, ``"npz"``.

    Raises:
        ImageReadError: the path does not exist, or the format is unsupported.
    """
    if not isinstance(source, (str, PathLike)):
        return "dicom_series"
    text = str(source)
    if parse_medmnist_reference(text) is not None:
        return "npz"
    path = Path(text)
    if path.is_dir():
        return "dicom_series"
    if not path.exists():
        raise ImageReadError(text, "no such file or folder")
    suffix = file_suffix(text)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in PIL_SUFFIXES:
        return "pil"
    if suffix == ".npz":
        raise ImageReadError(text, "a MedMNIST archive holds many images; address one as 'file.npz#train/0'")
    if suffix in DICOM_SUFFIXES or suffix == "" or has_dicom_magic(text):
        return "dicom"
    raise ImageReadError(
        text, f"unsupported file type '{suffix}' (expected DICOM, NIfTI, PNG/JPEG/TIFF or .npz)"
    )


@lru_cache(maxsize=2)
def _monai_loader(reader_name: str) -> Transform:
    """MONAI's LoadImage bound to one reader instance (built once)."""
    from monai.data import NibabelReader, PILReader
    from monai.transforms import LoadImage

    reader = NibabelReader() if reader_name == "NibabelReader" else PILReader()
    # LoadImage also instantiates every default reader; MONAI's GPU DICOM reader then
    # warns (logger and warning) that nvImageCodec is missing, which is irrelevant here.
    plugin_logger = logging.getLogger("monai.data.nvimgcodec_pydicom_plugin")
    level = plugin_logger.level
    plugin_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return LoadImage(reader=reader, image_only=True, ensure_channel_first=True, dtype=np.float32)
    finally:
        plugin_logger.setLevel(level)


def _nibabel_error(path: str) -> Exception | None:
    """The error nibabel itself raises on reading ``path`` (header and data), or ``None``."""
    import nibabel

    try:
        np.asanyarray(nibabel.load(path).dataobj)
    except Exception as err:  # noqa: BLE001 - the reason is all that is wanted
        if isinstance(err, nibabel.filebasedimages.ImageFileError) and str(path).endswith(".gz"):
            return OSError(f"damaged or truncated gzip-compressed NIfTI ({err})")
        return err
    return None


def _load_with_monai(path: str, reader_name: str) -> MetaTensor:
    """MONAI's LoadImage with one named reader, errors turned into ImageReadError."""
    if Path(path).stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    loader = _monai_loader(reader_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = loader(path)
    except Exception as err:
        cause = err.__cause__ or err
        kind = "NIfTI" if reader_name == "NibabelReader" else "image"
        if kind == "NIfTI":  # MONAI says only "cannot find a suitable reader"; nibabel says why
            cause = _nibabel_error(path) or cause
        message = " ".join(str(cause).split())
        raise ImageReadError(
            path, f"unreadable {kind} file ({type(cause).__name__}: {message[:160]})"
        ) from err
    if not torch.isfinite(image).all():
        raise ImageReadError(path, "image holds NaN or infinite values")
    return image


def _to_meta_tensor(array: np.ndarray, meta: dict) -> MetaTensor:
    affine = torch.as_tensor(meta.pop("affine"), dtype=torch.float64)
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)), affine=affine, meta=meta
    )


def load_image(source: ImageSource, channels: int | None = None) -> MetaTensor:
    """Load one image as a channel-first float32 ``MetaTensor``.

    Args:
        source: a DICOM/NIfTI/PNG/JPEG/TIFF file, a DICOM series (folder or list of
            slice files) or a MedMNIST reference ``"archive.npz#train/0"``.
        channels: ``None`` keeps the file's channels; ``1`` converts colour to grey
            (ITU-R BT.601 luma); any other number must match the file.

    Returns:
        ``MetaTensor`` of shape ``(C, x, y[, z])`` with ``affine`` and
        ``filename_or_obj`` in its metadata and no patient identifiers.

    Raises:
        ImageReadError: naming the file and the reason it cannot be read (including an image too
            small to be one, see :func:`check_image_size`).
        ValueError: ``channels`` is not positive.

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> load_image(get_testdata_file("CT_small.dcm")).shape
        torch.Size([1, 128, 128])
    """
    if channels is not None and channels < 1:
        raise ValueError(f"channels must be None or >= 1, got {channels!r}")
    kind = detect_format(source)
    if kind == "dicom":
        image = _to_meta_tensor(*read_dicom(source))  # type: ignore[arg-type]
    elif kind == "dicom_series":
        image = _to_meta_tensor(*read_dicom_series(source))
    elif kind == "npz":
        array = load_npz_image(str(source))
        meta = {"affine": np.eye(4), "filename_or_obj": str(source)}
        image = _to_meta_tensor(array, meta)
    else:
        image = _load_with_monai(str(source), "NibabelReader" if kind == "nifti" else "PILReader")
    name = source if isinstance(source, (str, PathLike)) else (list(source)[:1] or ["<empty>"])[0]
    check_image_size(name, image.shape[1:])
    if channels is not None and image.shape[0] != channels:
        if channels == 1 and image.shape[0] in (3, 4):
            from transforms.intensity import ToGrey

            image = ToGrey()(image)
        else:
            raise ImageReadError(name, f"has {image.shape[0]} channel(s), the pipeline expects {channels}")
    return image


class LoadMedicalImage(Transform):
    """Transform form of :func:`load_image`.

    Args:
        channels: see :func:`load_image`.

    Example:
        >>> loader = LoadMedicalImage(channels=1)
    """

    def __init__(self, channels: int | None = None) -> None:
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be None or >= 1, got {channels!r}")
        self.channels = channels

    def __call__(self, source: ImageSource) -> MetaTensor:
        return load_image(source, channels=self.channels)


class LoadMedicalImaged(MapTransform):
    """Dictionary twin of :class:`LoadMedicalImage`: loads every key's path in place.

    Args:
        keys: keys whose values are image sources (default ``image``).
        channels: see :func:`load_image`; masks usually want ``None``.
        allow_missing_keys: skip keys absent from the record.
    """

    def __init__(
        self,
        keys: KeysCollection = (Keys.IMAGE,),
        channels: int | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMedicalImage(channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
