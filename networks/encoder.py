"""The glass-box encoder: a full-resolution stem and three stages of shuffle units."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from networks.shuffle_units import ShuffleDownUnit, ShuffleUnit

__all__ = ["ShuffleEncoder"]


class ShuffleEncoder(nn.Module):
    """Stem conv (stride 1) followed by stages of one stride-2 unit and ``depth - 1`` stride-1 units.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        stem_channels: channels of the 3×3 stem conv.
        widths: output channels of each stage (even numbers).
        depths: units per stage (>= 1 each).
        unit: ``"shuffle"`` or ``"dense"`` (see :mod:`networks.shuffle_units`).

    Raises:
        ValueError: if ``widths`` and ``depths`` differ in length or a depth is < 1.

    Example:
        >>> enc = ShuffleEncoder(2, 1, 8, (16, 32), (1, 1))
        >>> enc(torch.zeros(1, 1, 32, 32)).shape, enc.total_stride
        (torch.Size([1, 32, 8, 8]), 4)
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        stem_channels: int,
        widths: Sequence[int],
        depths: Sequence[int],
        unit: str = "dense",
    ) -> None:
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(
                f"widths and depths must have the same length, got {len(widths)} and {len(depths)}"
            )
        if any(d < 1 for d in depths):
            raise ValueError(f"depths must all be >= 1, got {tuple(depths)}")
        self.out_channels = int(widths[-1])
        self.total_stride = 2 ** len(widths)
        layers: list[nn.Module] = [
            Convolution(
                spatial_dims,
                in_channels,
                stem_channels,
                kernel_size=3,
                act=("relu", {"inplace": True}),
                norm="batch",
                bias=False,
            )
        ]
        ch = stem_channels
        for width, depth in zip(widths, depths, strict=True):
            layers.append(ShuffleDownUnit(spatial_dims, ch, width, unit=unit))
            layers.extend(ShuffleUnit(spatial_dims, width, unit=unit) for _ in range(depth - 1))
            ch = width
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
