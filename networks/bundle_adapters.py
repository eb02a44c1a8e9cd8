"""Thin adapters that let ``GlassBoxNet`` serve through MONAI bundles and MONAI Label.

MONAI's bundle tools (``verify_net_in_out``, ``ckpt_export``, MONAI Label's ``monaibundle`` app)
expect a network that maps an image batch to *one* tensor, while :class:`~networks.GlassBoxNet`
returns a dict (``recon``, ``mu``, ``logvar``, ``logits``, ``attention``). The adapters here are
subclasses whose ``forward`` returns one entry of that dict. Subclassing (rather than wrapping
the network in another module) keeps the ``state_dict`` keys identical, so the ``best.pt`` /
``last.pt`` checkpoints written by :func:`pipelines.training.train` load into an adapter as they
are, and the exported TorchScript keeps the exported ``encode``/``decode``/``classify`` methods
for latent traversals.

:class:`DropMetaKeysd` is the one transform bundles need that MONAI lacks: MONAI Label appends a
``Restored`` post-transform that resizes ``pred`` back to the image's ``spatial_shape``; for a
class-score vector that fails, and dropping ``spatial_shape`` from the image metadata makes
``Restored`` leave the prediction as it is.

Example:
    >>> net = GlassBoxClassifier(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32)).eval()
    >>> net(torch.rand(1, 1, 32, 32)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import ensure_tuple

from networks.glassbox import GlassBoxNet

__all__ = ["GlassBoxClassifier", "GlassBoxEncoder", "DropMetaKeysd"]


class GlassBoxClassifier(GlassBoxNet):
    """``GlassBoxNet`` whose ``forward`` returns the class logits ``(batch, num_classes)``.

    The logits are those of the linear head on the latent mean (eval mode: no sampling), so the
    glass-box explanation ``weight × value`` still holds; apply a softmax in postprocessing for
    probabilities. Takes the arguments of :class:`~networks.GlassBoxNet`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Class logits of an image batch.

        Args:
            x: images, ``(batch, in_channels, *img_size)``.

        Returns:
            Logits ``(batch, num_classes)``.

        Raises:
            ValueError: if ``x`` does not fit the network.
        """
        return self.classify(self.encode(x)[self.key_mu])


class GlassBoxEncoder(GlassBoxNet):
    """``GlassBoxNet`` whose ``forward`` returns the latent means ``(batch, latent_dim)`` (embeddings).

    Used by the pretraining bundle, whose model has no trained classifier head. Takes the
    arguments of :class:`~networks.GlassBoxNet`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Latent means of an image batch.

        Args:
            x: images, ``(batch, in_channels, *img_size)``.

        Returns:
            ``mu``, ``(batch, latent_dim)``.

        Raises:
            ValueError: if ``x`` does not fit the network.
        """
        return self.encode(x)[self.key_mu]


class DropMetaKeysd(MapTransform):
    """Remove entries (default ``spatial_shape``) from the metadata of ``MetaTensor`` items.

    The metadata dict is copied first, so the input item is not changed. A legacy
    ``<key>_meta_dict`` entry, when present, loses the same entries.

    Args:
        keys: keys of the ``MetaTensor`` items.
        meta_keys: metadata entries to drop.
        allow_missing_keys: don't raise if a key is missing.

    Example:
        >>> item = {"image": MetaTensor(torch.zeros(1, 4, 4), meta={"spatial_shape": (4, 4)})}
        >>> "spatial_shape" in DropMetaKeysd("image")(item)["image"].meta
        False
    """

    def __init__(
        self,
        keys: KeysCollection,
        meta_keys: Sequence[str] | str = ("spatial_shape",),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.meta_keys = tuple(ensure_tuple(meta_keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            item = d[key]
            if isinstance(item, MetaTensor):
                item = item.clone()
                item.meta = {k: v for k, v in item.meta.items() if k not in self.meta_keys}
                d[key] = item
            legacy = f"{key}_meta_dict"
            if isinstance(d.get(legacy), Mapping):
                d[legacy] = {k: v for k, v in d[legacy].items() if k not in self.meta_keys}
        return d
