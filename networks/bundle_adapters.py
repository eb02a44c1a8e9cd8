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
from networks.spatial_glassbox import SpatialGlassBoxNet

__all__ = [
    "GlassBoxClassifier",
    "GlassBoxEncoder",
    "SpatialGlassBoxClassifier",
    "SpatialGlassBoxEncoder",
    "glassbox_network",
]


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


class SpatialGlassBoxClassifier(SpatialGlassBoxNet):
    """:class:`~networks.SpatialGlassBoxNet` whose ``forward`` returns the class logits ``(batch, num_classes)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Class logits of an image batch (the linear head on the attention-pooled latent grid)."""
        return self.classify(self.encode(x)["mu"])


class SpatialGlassBoxEncoder(SpatialGlassBoxNet):
    """:class:`~networks.SpatialGlassBoxNet` whose ``forward`` returns ``mu`` ``(batch, latent_dim)`` (embeddings)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``mu`` of an image batch: the pooled grid channels and the global code."""
        return self.encode(x)["mu"]


_ADAPTERS = {
    ("spatial", "classifier"): SpatialGlassBoxClassifier,
    ("spatial", "encoder"): SpatialGlassBoxEncoder,
    ("spatial", "network"): SpatialGlassBoxNet,
    ("vector", "classifier"): GlassBoxClassifier,
    ("vector", "encoder"): GlassBoxEncoder,
    ("vector", "network"): GlassBoxNet,
}


def glassbox_network(
    latent: str = "spatial",
    output: str = "classifier",
    spatial_channels: int = 8,
    latent_pool: str = "attention",
    pooled_logits: bool | None = None,
    **kwargs,
) -> torch.nn.Module:
    """The bundle's ``network_def``: the core a run was trained with, returning what the bundle serves.

    Args:
        latent: ``"spatial"`` (:class:`~networks.SpatialGlassBoxNet`) or ``"vector"`` (:class:`~networks.GlassBoxNet`),
            as ``TrainConfig.latent``.
        output: ``"classifier"`` (logits), ``"encoder"`` (``mu``) or ``"network"`` (the output dict).
        spatial_channels: channels of the latent grid (spatial core only).
        latent_pool: pooling of the vector core (ignored by the spatial core, which pools by attention).
        pooled_logits: ``pooled_logits`` of the vector core (ignored by the spatial core).
        **kwargs: the arguments both cores share (``spatial_dims``, ``in_channels``, ``num_classes``,
            ``img_size``, ``size``, ``latent_dim``, ...).

    Returns:
        The network; its ``state_dict`` keys are those ``pipelines.training.train`` saves.

    Raises:
        ValueError: an unknown ``latent`` or ``output``.

    Example:
        >>> net = glassbox_network("spatial", img_size=(32, 32)).eval()
        >>> net(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 2])
    """
    if (latent, output) not in _ADAPTERS:
        raise ValueError(
            f"latent must be 'spatial' or 'vector' and output 'classifier', 'encoder' or 'network', "
            f"got latent={latent!r}, output={output!r}"
        )
    cls = _ADAPTERS[(latent, output)]
    if latent == "spatial":
        return cls(spatial_channels=spatial_channels, **kwargs)
    return cls(latent_pool=latent_pool, pooled_logits=pooled_logits, **kwargs)
