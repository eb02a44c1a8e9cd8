"""Decoder of the spatial-latent core: a latent grid plus a small global code → image.

The global code is drawn onto the grid by one linear layer (a map of ``global_channels`` at
the grid's size), concatenated with the latent grid and upsampled to the image by the same
resize-convolution stages as :class:`~networks.decoder.LatentDecoder`. A finding of a few
pixels has its own latent cells at 1/4 of the image size, so the decoder can draw it — which a
16-number vector code cannot (see :mod:`networks.spatial_glassbox`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

__all__ = ["SpatialLatentDecoder"]


class SpatialLatentDecoder(nn.Module):
    """``(latent grid, global code)`` → 3×3 conv → per stage: ×2 nearest upsampling + 3×3 conv → image.

    Args:
        spatial_dims: 2 or 3.
        spatial_channels: channels of the latent grid.
        global_dim: size of the global code (0: none).
        out_channels: image channels.
        feature_size: spatial size of the latent grid.
        channels: channels of each stage, coarsest first; each stage after the first doubles the
            size, and one more doubling ends at ``feature_size * 2 ** len(channels)``.
        global_channels: channels of the map the global code is drawn onto.

    Example:
        >>> dec = SpatialLatentDecoder(2, 4, 3, 1, (8, 8), (16, 8))
        >>> dec(torch.zeros(2, 4, 8, 8), torch.zeros(2, 3)).shape
        torch.Size([2, 1, 32, 32])
    """

    def __init__(
        self,
        spatial_dims: int,
        spatial_channels: int,
        global_dim: int,
        out_channels: int,
        feature_size: Sequence[int],
        channels: Sequence[int],
        global_channels: int = 8,
    ) -> None:
        super().__init__()
        self.feature_size = [int(s) for s in feature_size]
        self.global_dim = int(global_dim)
        self.global_channels = int(global_channels) if global_dim > 0 else 0
        self.global_map = nn.Linear(
            max(self.global_dim, 1), max(self.global_channels, 1) * math.prod(self.feature_size)
        )
        act = ("relu", {"inplace": True})
        ch = int(channels[0])
        layers: list[nn.Module] = [
            Convolution(
                spatial_dims, spatial_channels + self.global_channels, ch, act=act, norm="batch", bias=False
            )
        ]
        for nxt in list(channels[1:]) + [channels[-1]]:
            layers.append(
                UpSample(
                    spatial_dims,
                    ch,
                    ch,
                    scale_factor=2,
                    mode="nontrainable",
                    interp_mode="nearest",
                    align_corners=None,
                )
            )
            layers.append(Convolution(spatial_dims, ch, int(nxt), act=act, norm="batch", bias=False))
            ch = int(nxt)
        layers.append(Convolution(spatial_dims, ch, out_channels, kernel_size=3, conv_only=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, spatial: torch.Tensor, global_code: torch.Tensor) -> torch.Tensor:
        """Decode a latent grid ``(batch, spatial_channels, *feature_size)`` and a global code ``(batch, global_dim)``."""
        if self.global_channels > 0:
            shape = [spatial.shape[0], self.global_channels] + self.feature_size
            drawn = torch.relu(self.global_map(global_code)).reshape(shape)
            spatial = torch.cat([spatial, drawn], dim=1)
        return self.layers(spatial)
