"""Thin adapters that let ``GlassBoxNet`` serve through MONAI bundles and MONAI Label.

MONAI's bundle tools (``verify_net_in_out``, ``ckpt_export``, MONAI Label's ``monaibundle`` app)
expect a network that maps an image batch to *one* tensor, while :class:`~networks.GlassBoxNet`
returns a dict (``recon``, ``mu``, ``logvar``, ``logits``, ``attention``). The adapters here are
subclasses whose ``forward`` returns one entry of that dict. Subclassing (rather than wrapping
the network in another module) keeps the ``state_dict`` keys identical, so the ``best.pt`` /
``last.pt`` checkpoints written by :func:`pipelines.training.train` load into an adapter as they
are, and the exported TorchScript keeps the exported ``encode``/``decode``/``classify`` methods
for latent traversals.

The metadata clean-up their postprocessing needs is :class:`transforms.meta_keys.DropMetaKeysd`.

Example:
    >>> net = GlassBoxClassifier(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32)).eval()
    >>> net(torch.rand(1, 1, 32, 32)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

import torch

from networks.glassbox import GlassBoxNet

__all__ = ["GlassBoxClassifier", "GlassBoxEncoder"]


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
