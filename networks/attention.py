"""Spatial attention map that gates the encoder features and is shown to users."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["SpatialAttention", "upsample_attention"]


class SpatialAttention(nn.Module):
    """A 1-channel sigmoid map at feature resolution: 3×3 conv → norm → ReLU → 1×1 conv → sigmoid.

    The module returns the map only; the caller gates the features with
    ``features * attention`` so that the map can be inspected, replaced or
    zeroed (e.g. by a forward hook) without touching the encoder.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the features the map is computed from.
        hidden_channels: channels of the hidden 3×3 conv.

    Example:
        >>> att = SpatialAttention(2, 32, 8)(torch.zeros(2, 32, 8, 8))
        >>> att.shape, bool(((att >= 0) & (att <= 1)).all())
        (torch.Size([2, 1, 8, 8]), True)
    """

    def __init__(self, spatial_dims: int, in_channels: int, hidden_channels: int = 16) -> None:
        super().__init__()
        self.hidden = Convolution(
            spatial_dims,
            in_channels,
            hidden_channels,
            kernel_size=3,
            act=("relu", {"inplace": True}),
            norm="batch",
            bias=False,
        )
        self.to_map = Convolution(spatial_dims, hidden_channels, 1, kernel_size=1, conv_only=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.to_map(self.hidden(features)))


def upsample_attention(attention: torch.Tensor, spatial_size: list[int]) -> torch.Tensor:
    """Resize a feature-grid map to the input size, each cell over the centre of its receptive field.

    The encoder downsamples with "same"-padded stride-2 3×3 convs, which centre feature cell
    ``j`` on input pixel ``s·j`` (``s`` = the total stride: each conv's centre tap sits on the
    pixel its output is indexed by). Plain
    resizing (``align_corners=False``) would put the cell's value at ``s·j + (s − 1)/2``, i.e.
    3.5 px further down and right at stride 8 — a systematic shift of the displayed map. Here
    cell ``j`` lands on pixel ``s·j`` (bi/trilinear with ``align_corners=True`` onto
    ``s·(n − 1) + 1`` pixels) and the last cell's value extends over the remaining ``s − 1``
    pixels. When the input size is not a whole multiple of the map's size along some axis,
    plain resizing is used. Values stay in the range of the map.

    Args:
        attention: map of shape ``(batch, 1, *feature_size)`` with 2 or 3 spatial dims.
        spatial_size: target spatial size, e.g. ``[64, 64]``.

    Returns:
        Map of shape ``(batch, 1, *spatial_size)``.

    Raises:
        ValueError: if ``spatial_size`` does not have one entry per spatial dim of ``attention``.

    Example:
        >>> up = upsample_attention(torch.arange(4.0).view(1, 1, 2, 2), [4, 4])
        >>> up.shape, up[0, 0, 0].tolist(), up[0, 0, 2:, 2:].unique().tolist()
        (torch.Size([1, 1, 4, 4]), [0.0, 0.5, 1.0, 1.0], [3.0])
    """
    spatial_dims = attention.dim() - 2
    if len(spatial_size) != spatial_dims:
        raise ValueError(
            f"spatial_size: expected {spatial_dims} entries for a {spatial_dims}D map, got {spatial_size}"
        )
    mode = "bilinear" if spatial_dims == 2 else "trilinear"
    inner: list[int] = []
    pad: list[int] = []
    for d in range(spatial_dims):
        cells = int(attention.shape[2 + d])
        target = int(spatial_size[d])
        if target % cells != 0:
            return F.interpolate(attention, size=spatial_size, mode=mode, align_corners=False)
        inner.append((target // cells) * (cells - 1) + 1)
    for d in range(spatial_dims - 1, -1, -1):  # F.pad lists the last axis first
        pad.extend([0, int(spatial_size[d]) - inner[d]])
    resized = F.interpolate(attention, size=inner, mode=mode, align_corners=True)
    return F.pad(resized, pad, mode="replicate")
