"""MedMNIST-format ``.npz`` archives: ``{split}_images`` and ``{split}_labels`` arrays.

A single image inside an archive is addressed as ``"archive.npz#train/12"`` (split and
index), so such images can sit in a MONAI datalist like any other file.
"""

from __future__ import annotations

import zipfile
from functools import lru_cache
from os import PathLike
from pathlib import Path

import numpy as np

from transforms.read_errors import ImageReadError

__all__ = [
    "MEDMNIST_SPLITS",
    "read_medmnist_npz",
    "medmnist_reference",
    "parse_medmnist_reference",
    "load_npz_image",
]

#: MedMNIST split names and the MONAI datalist sections they map to.
MEDMNIST_SPLITS = {"train": "training", "val": "validation", "test": "test"}


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            splits = {}
            for split in MEDMNIST_SPLITS:
                if f"{split}_images" in keys:
                    labels = archive[f"{split}_labels"] if f"{split}_labels" in keys else None
                    splits[split] = (archive[f"{split}_images"], labels)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise ImageReadError(path, f"not a readable .npz archive ({type(err).__name__}: {err})") from err
    if not splits:
        raise ImageReadError(
            path, f"no MedMNIST arrays (expected train_images/val_images/test_images, found {sorted(keys)})"
        )
    for split, (images, labels) in splits.items():
        if images.ndim not in (3, 4, 5):
            raise ImageReadError(
                path, f"{split}_images must be (N, H, W[, D][, C]), got shape {images.shape}"
            )
        if labels is not None and len(labels) != len(images):
            raise ImageReadError(path, f"{split}_labels has {len(labels)} rows for {len(images)} images")
    return splits


def read_medmnist_npz(path: str | PathLike) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Read every split of a MedMNIST archive.

    Args:
        path: the ``.npz`` file.

    Returns:
        ``{split: (images, labels or None)}`` for the splits present (train/val/test).

    Raises:
        ImageReadError: unreadable archive or no MedMNIST arrays.
    """
    p = Path(path)
    try:
        mtime = p.stat().st_mtime
    except OSError as err:
        raise ImageReadError(p, f"cannot open file ({err.strerror or err})") from err
    if p.stat().st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    return _load(str(p), mtime)


def medmnist_reference(path: str | PathLike, split: str, index: int) -> str:
    """The datalist reference of one image in an archive: ``"path#split/index"``."""
    return f"{path}#{split}/{index}"


def parse_medmnist_reference(reference: str) -> tuple[str, str, int] | None:
    """Split ``"path.npz#split/index"`` into its parts; None for a plain path."""
    if "#" not in reference:
        return None
    path, _, fragment = reference.rpartition("#")
    split, _, index = fragment.partition("/")
    if not path.lower().endswith(".npz") or split not in MEDMNIST_SPLITS or not index.isdigit():
        return None
    return path, split, int(index)


def load_npz_image(reference: str) -> np.ndarray:
    """Load one image of a MedMNIST archive as a channel-first float32 ``(C, x, y[, z])`` array.

    2D MedMNIST images are stored row-major ``(H, W[, 3])``; they are transposed to MONAI's
    ``(x, y)`` order, as MONAI's PIL reader does for PNG files. 3D volumes keep their axes.

    Args:
        reference: ``"archive.npz#split/index"``.

    Returns:
        The image as float32.

    Raises:
        ImageReadError: bad reference, missing split or index out of range.
    """
    parsed = parse_medmnist_reference(reference)
    if parsed is None:
        raise ImageReadError(reference, "not a MedMNIST image reference (expected 'file.npz#train/0')")
    path, split, index = parsed
    splits = read_medmnist_npz(path)
    if split not in splits:
        raise ImageReadError(path, f"no '{split}' split in archive (found {sorted(splits)})")
    images = splits[split][0]
    if not 0 <= index < len(images):
        raise ImageReadError(
            reference, f"index {index} out of range for {split} split of {len(images)} images"
        )
    image = np.asarray(images[index], dtype=np.float32)
    if images.ndim == 3:  # 2D grey (H, W)
        return np.ascontiguousarray(image.T[None])
    if images.ndim == 4 and images.shape[-1] == 3:  # 2D colour (H, W, 3)
        return np.ascontiguousarray(image.transpose(2, 1, 0))
    if images.ndim == 4:  # 3D grey volume, stored as given
        return np.ascontiguousarray(image[None])
    return np.ascontiguousarray(np.moveaxis(image, -1, 0))  # 3D with channels last
