"""Load a DICOM image together with the headers of the files it came from.

Outputs that point back at their source (a DICOM SEG references every source slice by its
SOP instance) need the source headers in the volume's slice order. :func:`load_image`
already orders a series by slice position and records the files in that order
(``meta["source_files"]``); this module reads their headers back in the same order, so a
mask predicted on the loaded volume maps slice for slice onto the source instances.
"""

from __future__ import annotations

import numpy as np
from monai.data import MetaTensor
from pydicom.dataset import Dataset

from transforms.dicom_reader import read_dicom_dataset
from transforms.image_loading import ImageSource, load_image
from transforms.read_errors import ImageReadError

__all__ = ["load_dicom_with_sources"]


def load_dicom_with_sources(source: ImageSource) -> tuple[MetaTensor, np.ndarray, list[Dataset]]:
    """Load a DICOM file or series as the project does, plus its source headers.

    Args:
        source: a DICOM file, a series folder or a list of slice files.

    Returns:
        ``(image, affine, datasets)``: the channel-first ``MetaTensor`` of
        :func:`~transforms.image_loading.load_image` (``(C, x, y[, z])``), its 4×4
        voxel-to-RAS affine (float64) and the source headers (without pixel data) in the
        volume's slice order: ``datasets[k]`` is the slice at ``image[..., k]``.

    Raises:
        ImageReadError: the source cannot be read, or it is not DICOM (a NIfTI or PNG file
            has no source instances to reference).

    Example:
        >>> from pydicom.data import get_testdata_file
        >>> image, affine, datasets = load_dicom_with_sources(get_testdata_file("CT_small.dcm"))
        >>> tuple(image.shape), len(datasets), str(datasets[0].Modality)
        ((1, 128, 128), 1, 'CT')
    """
    image = load_image(source)
    files = image.meta.get("source_files")
    if not files:
        name = source if not isinstance(source, (list, tuple)) else (list(source)[:1] or ["<empty>"])[0]
        raise ImageReadError(name, "not a DICOM image or series; it has no source instances to reference")
    datasets = [read_dicom_dataset(f, stop_before_pixels=True) for f in files]
    return image, np.asarray(image.affine, dtype=np.float64), datasets
