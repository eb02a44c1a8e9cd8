"""Gaussian latent layer of the β-VAE: gated features → ``mu``, ``logvar``; reparameterisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["GaussianLatent", "reparameterize"]


class GaussianLatent(nn.Module):
    """1×1 conv reduction → flatten → linear to ``mu`` and ``logvar``, plus a global-max branch.

    Flattening (rather than global pooling) keeps *where* the features are, so
    the decoder can place structures again and the attention map's gating acts
    position by position. It ties the layer to one feature size.

    The global-max branch adds a linear map of each gated feature channel's strongest
    response anywhere in the image. A small finding at an unknown position (a lesion) is a
    max-type detection, which a linear map of flattened features can only learn position by
    position (measured on ``brain2d`` 64×64, 2,000 training images, 8 epochs, one seed:
    ``tiny`` test AUC 0.795 without the branch, 0.855 with it).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the gated features.
        feature_size: spatial size of the gated features, e.g. ``(8, 8)``.
        proj_channels: channels after the 1×1 reduction.
        latent_dim: number of latent variables.
        global_max: add the global-max branch (``False``: flattened features only).

    Example:
        >>> mu, logvar = GaussianLatent(2, 32, (4, 4), 8, 16)(torch.zeros(3, 32, 4, 4))
        >>> mu.shape, logvar.shape
        (torch.Size([3, 16]), torch.Size([3, 16]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        feature_size: Sequence[int],
        proj_channels: int,
        latent_dim: int,
        global_max: bool = True,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.reduce = Convolution(
            spatial_dims,
            in_channels,
            proj_channels,
            kernel_size=1,
            act=("relu", {"inplace": True}),
            norm="batch",
            bias=False,
        )
        self.fc = nn.Linear(proj_channels * math.prod(feature_size), 2 * latent_dim)
        self.fc_max = nn.Linear(in_channels, 2 * latent_dim) if global_max else None

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stats = self.fc(torch.flatten(self.reduce(features), 1))
        if self.fc_max is not None:
            stats = stats + self.fc_max(torch.flatten(features, 2).amax(dim=2))
        return stats[:, : self.latent_dim], stats[:, self.latent_dim :]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (Kingma & Welling 2014).

    Args:
        mu: latent means, ``(batch, latent_dim)``.
        logvar: latent log-variances, same shape.

    Returns:
        One sample per row, same shape as ``mu``.

    Example:
        >>> reparameterize(torch.zeros(2, 3), torch.full((2, 3), -1e4)).abs().max().item()
        0.0
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
