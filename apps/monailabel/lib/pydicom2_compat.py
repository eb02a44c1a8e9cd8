"""Let the project's DICOM reader run on pydicom 2 inside MONAI Label's environment.

MONAI Label 0.8.5 imports ``pydicom_seg``, which needs pydicom < 3, so ``.venv-monailabel`` has
pydicom 2.4. The project's reader (:mod:`transforms.dicom_reader`) imports ``apply_color_lut``
and ``apply_modality_lut`` from ``pydicom.pixels``, where pydicom 3 moved them from
``pydicom.pixel_data_handlers.util`` (same functions, same signatures). Under pydicom 2,
:func:`provide_pydicom_pixels` registers that module under the pydicom 3 name, so a DICOM series
fetched over DICOMweb is read exactly as ``medglass run`` reads it. Under pydicom 3 it does
nothing. (A ``try``/``except ImportError`` at that import in the reader would make this module
unnecessary.)

Example:
    >>> provide_pydicom_pixels()
    >>> from pydicom.pixels import apply_modality_lut
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["provide_pydicom_pixels"]


def provide_pydicom_pixels() -> None:
    """Make ``pydicom.pixels`` importable under pydicom 2 (see the module docstring)."""
    try:
        importlib.import_module("pydicom.pixels")
    except ImportError:
        import pydicom

        util = importlib.import_module("pydicom.pixel_data_handlers.util")
        sys.modules["pydicom.pixels"] = util
        pydicom.pixels = util  # type: ignore[attr-defined]
