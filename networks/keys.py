"""One vocabulary for batch, datalist and network-output keys.

Every module, config and ``from_engine([...])`` call names its keys through
:class:`Keys`, so that a renamed key is a one-line change. It lives in ``networks/``, the
lowest layer (networks know no files, transforms or pipelines), and ``transforms.keys``
re-exports it.
"""

from __future__ import annotations

from monai.utils import StrEnum

__all__ = ["Keys"]


class Keys(StrEnum):
    """Keys of datalist records, batches and model outputs.

    MONAI's ``StrEnum`` (a ``str`` subclass), so ``Keys.IMAGE == "image"`` and members work as
    dict keys and in f-strings wherever plain strings are expected, without ``.value``.

    Example:
        >>> record = {Keys.IMAGE: "scan.nii.gz", Keys.LABEL: 1}
        >>> record["image"]
        'scan.nii.gz'
    """

    IMAGE = "image"
    LABEL = "label"
    MASK = "mask"
    BOXES = "boxes"
    ATTRIBUTES = "attributes"
    ID = "id"
    PRED = "pred"
    LATENT = "latent"
    MU = "mu"
    LOGVAR = "logvar"
    LOGITS = "logits"
    ATTENTION = "attention"
    RECON = "recon"
    LOSS = "loss"
    ERASED_BOXES = "erased_boxes"
