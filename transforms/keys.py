"""One vocabulary for batch, datalist and network-output keys.

Every module, config and ``from_engine([...])`` call names its keys through
:class:`Keys`, so that a renamed key is a one-line change.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Keys"]


class Keys(str, Enum):
    """Keys of datalist records, batches and model outputs.

    A ``str`` subclass, so ``Keys.IMAGE == "image"`` and members work as dict keys
    wherever plain strings are expected (``enum.StrEnum`` needs Python 3.11).

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

    def __str__(self) -> str:
        return self.value
