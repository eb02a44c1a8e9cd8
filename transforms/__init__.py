"""I/O readers and MONAI-style transforms for medglass.

Array transforms work on one channel-first image; their dictionary twins (``...d``)
loop over keys and draw randomness once per call.
"""

from transforms.image_loading import LoadMedicalImage, LoadMedicalImaged, load_image
from transforms.intensity import CT_WINDOW_PRESETS, CTWindow, CTWindowd, ToGrey, ToGreyd
from transforms.keys import Keys
from transforms.patch_erasing import RandPatchErase, RandPatchErased
from transforms.preprocessing import preprocessing_transforms
from transforms.read_errors import ImageReadError

__all__ = [
    "CT_WINDOW_PRESETS",
    "CTWindow",
    "CTWindowd",
    "ImageReadError",
    "Keys",
    "LoadMedicalImage",
    "LoadMedicalImaged",
    "RandPatchErase",
    "RandPatchErased",
    "ToGrey",
    "ToGreyd",
    "load_image",
    "preprocessing_transforms",
]
