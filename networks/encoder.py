"""The glass-box encoder: a stem conv and stages of shuffle units, total stride ``2 ** stages``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

from networks.shuffle_units import ShuffleDownUnit, ShuffleUnit

__all__ = ["ShuffleEncoder"]


class ShuffleEncoder(nn.Module):
    """Stem conv followed by stages of one stride-2 unit and ``depth - 1`` stride-1 units.

    With ``stem_stride=2`` the stem downsamples instead of the first stage (whose first unit
    then only changes the channel count): the total stride is the same, ``2 ** len(widths)``,
    but no convolution runs at full resolution after the stem, which makes the encoder faster on
    a CPU (``bench/bench_units.py`` measures it).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        stem_channels: channels of the 3×3 stem conv.
        widths: output channels of each stage (even numbers).
        depths: units per stage (>= 1 each).
        unit: ``"shuffle"`` or ``"dense"`` (see :mod:`networks.shuffle_units`).
        stem_stride: stride of the stem conv, 1 (default) or 2.

    Raises:
        ValueError: if ``widths`` and ``depths`` differ in length, a depth is < 1 or
            ``stem_stride`` is not 1 or 2.

    Example:
        >>> enc = ShuffleEncoder(2, 1, 8, (16, 32), (1, 1))
        >>> enc(torch.zeros(1, 1, 32, 32)).shape, enc.total_stride
        (torch.Size([1, 32, 8, 8]), 4)
        >>> [tuple(f.shape) for f in enc.stage_features(torch.zeros(1, 1, 32, 32))]
        [(1, 8, 32, 32), (1, 16, 16, 16), (1, 32, 8, 8)]
        >>> enc.stage_channels, enc.stage_strides
        ((8, 16, 32), (1, 2, 4))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        stem_channels: int,
        widths: Sequence[int],
        depths: Sequence[int],
        unit: str = "dense",
        stem_stride: int = 1,
    ) -> None:
        super().__init__()
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        if len(widths) != len(depths):
            raise ValueError(
                f"widths and depths must have the same length, got {len(widths)} and {len(depths)}"
            )
        if any(d < 1 for d in depths):
            raise ValueError(f"depths must all be >= 1, got {tuple(depths)}")
        self.out_channels = int(widths[-1])
        self.total_stride = 2 ** len(widths)
        self.stage_channels: tuple[int, ...] = (int(stem_channels), *(int(w) for w in widths))
        """Channels of each :meth:`stage_features` output (stem first)."""
        self.stage_strides: tuple[int, ...] = (
            stem_stride,
            *(2 ** (i + 1) for i in range(len(widths))),
        )
        """Downsampling factor of each :meth:`stage_features` output (stem first)."""
        layers: list[nn.Module] = [
            Convolution(
                spatial_dims,
                in_channels,
                stem_channels,
                kernel_size=3,
                strides=stem_stride,
                act=("relu", {"inplace": True}),
                norm="batch",
                bias=False,
            )
        ]
        ch = stem_channels
        for stage, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            stride = 1 if stage == 0 and stem_stride == 2 else 2
            layers.append(ShuffleDownUnit(spatial_dims, ch, width, unit=unit, stride=stride))
            layers.extend(ShuffleUnit(spatial_dims, width, unit=unit) for _ in range(depth - 1))
            ch = width
        self.layers = nn.Sequential(*layers)
        # index in ``layers`` of the last module of the stem and of each stage
        self._stage_ends: list[int] = [int(i) for i in torch.cumsum(torch.tensor([1, *depths]), 0) - 1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The stem output and each stage's output, finest first (for skip connections and pyramids).

        One pass through the same layers as :meth:`forward`; the last element equals
        ``forward(x)``. Output ``i`` has :attr:`stage_channels` ``[i]`` channels and spatial size
        ``input size / stage_strides[i]`` (with ``stem_stride=2`` the stem and the first stage
        share stride 2).

        Args:
            x: images ``(batch, in_channels, *spatial)``, spatial sizes divisible by
                :attr:`total_stride`.

        Returns:
            ``1 + len(widths)`` tensors: the stem output, then the output of each stage.
        """
        features: list[torch.Tensor] = []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self._stage_ends:
                features.append(x)
        return features
