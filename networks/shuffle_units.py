"""ShuffleNetV2-style encoder units for 2D and 3D images, with a CPU-friendly variant.

Two unit types share one skeleton (Ma et al., "ShuffleNet V2", ECCV 2018): the
input is split in two halves along the channels, one half goes through a small
branch, the halves are concatenated and the channels are shuffled so that the
next unit mixes them. A downsampling unit feeds the whole input to two
strided branches instead of splitting it.

``unit="shuffle"`` — the original branch: 1×1 conv → depthwise 3×3 conv → 1×1 conv
(``2c² + 9c`` weights for a branch of ``c`` channels).

``unit="dense"`` — the same split/concat/shuffle unit whose branch is a *dense*
3×3 conv into a narrow bottleneck of ``c / 5`` channels followed by a 1×1 conv
back to ``c`` channels (``9c·c/5 + c·c/5 = 2c²`` weights: the same capacity).
In 3D its 3×3×3 conv holds ``27c·c/5`` weights, so there the dense model is larger
than the depthwise one.

Why ``"dense"`` is the default: depthwise convolutions are cheap in MACs but
memory-bound, so on a CPU they run far below the arithmetic rate of a dense 3×3
conv, and the depthwise branch needs three conv + norm passes over the activations
where the dense branch needs two. At about the same weights, the dense unit trains
more images per second (``bench/bench_units.py`` measures both unit types in the full
:class:`~networks.glassbox.GlassBoxNet`, forward + backward, per size preset and thread
count); ``unit="shuffle"`` keeps the paper's unit for hardware with fast depthwise
kernels and for comparison.

Written by hand because MONAI has no ShuffleNet block and torchvision's
ShuffleNetV2 is 2D-only; the convolutions, norms and activations are MONAI's
(:class:`monai.networks.blocks.Convolution`), so ``spatial_dims`` 2 and 3 work.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = [
    "UNIT_TYPES",
    "DENSE_BOTTLENECK_RATIO",
    "channel_shuffle",
    "ShuffleUnit",
    "ShuffleDownUnit",
    "make_branch",
]

UNIT_TYPES = ("shuffle", "dense")
"""Unit types accepted by :func:`make_branch`, :class:`ShuffleUnit` and :class:`ShuffleDownUnit`."""

DENSE_BOTTLENECK_RATIO = 0.2
"""Bottleneck width of a ``"dense"`` branch relative to its input: ``c/5`` gives ``2c²`` weights,
the same as the depthwise branch's ``2c² + 9c``."""

_ACT = ("relu", {"inplace": True})
_NORM = "batch"


def _check_unit(unit: str) -> None:
    if unit not in UNIT_TYPES:
        raise ValueError(f"unit must be one of {UNIT_TYPES}, got {unit!r}")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal channel groups (any number of spatial dims).

    Args:
        x: tensor of shape ``(batch, channels, *spatial)``; ``channels`` divisible by ``groups``.
        groups: number of channel groups to interleave.

    Returns:
        Tensor of the same shape whose channel ``i * groups + g`` is input channel ``g * (C // groups) + i``.

    Example:
        >>> channel_shuffle(torch.arange(4.0).reshape(1, 4, 1, 1), 2).flatten().tolist()
        [0.0, 2.0, 1.0, 3.0]
    """
    b, c = x.shape[0], x.shape[1]
    return x.reshape(b, groups, c // groups, -1).transpose(1, 2).reshape(x.shape)


def _conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    strides: int = 1,
    groups: int = 1,
    act: bool = True,
) -> Convolution:
    """Conv (no bias) → batch norm → optional ReLU, from MONAI's ``Convolution`` block."""
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        strides=strides,
        kernel_size=kernel_size,
        groups=groups,
        act=_ACT if act else None,
        norm=_NORM,
        bias=False,
    )


def make_branch(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    stride: int = 1,
    unit: str = "dense",
    pre_pointwise: bool = True,
) -> nn.Sequential:
    """Build one unit branch.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels entering the branch.
        out_channels: channels leaving the branch.
        stride: stride of the 3×3 conv (1, or 2 in a downsampling unit).
        unit: ``"shuffle"`` (1×1 → depthwise 3×3 → 1×1) or ``"dense"`` (dense 3×3 into a
            ``DENSE_BOTTLENECK_RATIO`` bottleneck → 1×1).
        pre_pointwise: for ``"shuffle"`` only, start with the 1×1 conv (ShuffleNetV2's right
            branch); ``False`` gives its left downsampling branch, depthwise 3×3 → 1×1.

    Returns:
        The branch as an ``nn.Sequential``.

    Raises:
        ValueError: if ``unit`` is unknown.

    Example:
        >>> branch = make_branch(2, 16, 16, unit="dense")
        >>> branch(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 16, 8, 8])
    """
    _check_unit(unit)
    if unit == "dense":
        mid = max(4, round(in_channels * DENSE_BOTTLENECK_RATIO))
        return nn.Sequential(
            _conv(spatial_dims, in_channels, mid, kernel_size=3, strides=stride),
            _conv(spatial_dims, mid, out_channels),
        )
    layers: list[nn.Module] = []
    mid = in_channels
    if pre_pointwise:
        mid = out_channels
        layers.append(_conv(spatial_dims, in_channels, mid))
    layers.append(_conv(spatial_dims, mid, mid, kernel_size=3, strides=stride, groups=mid, act=False))
    layers.append(_conv(spatial_dims, mid, out_channels))
    return nn.Sequential(*layers)


class ShuffleUnit(nn.Module):
    """Stride-1 unit: split the channels, transform one half, concatenate, shuffle.

    Args:
        spatial_dims: 2 or 3.
        channels: input and output channels (even).
        unit: ``"shuffle"`` or ``"dense"`` branch (see the module docstring).

    Raises:
        ValueError: if ``channels`` is odd or ``unit`` is unknown.

    Example:
        >>> ShuffleUnit(3, 8, unit="shuffle")(torch.zeros(2, 8, 4, 4, 4)).shape
        torch.Size([2, 8, 4, 4, 4])
    """

    def __init__(self, spatial_dims: int, channels: int, unit: str = "dense") -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"channels must be even for a channel split, got {channels}")
        self.half = channels // 2
        self.branch = make_branch(spatial_dims, self.half, self.half, stride=1, unit=unit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = x[:, : self.half]
        out = self.branch(x[:, self.half :])
        return channel_shuffle(torch.cat([kept, out], dim=1), 2)


class ShuffleDownUnit(nn.Module):
    """Stride-2 unit: two strided branches on the whole input, concatenated and shuffled.

    With ``stride=1`` the same unit only changes the channel count (the first unit of an
    encoder whose stem already downsampled).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (even); each branch yields half of them.
        unit: ``"shuffle"`` or ``"dense"`` branches (see the module docstring).
        stride: stride of both branches' 3×3 convs, 2 (default) or 1.

    Raises:
        ValueError: if ``out_channels`` is odd, ``stride`` is not 1 or 2, or ``unit`` is unknown.

    Example:
        >>> ShuffleDownUnit(2, 8, 16)(torch.zeros(1, 8, 16, 16)).shape
        torch.Size([1, 16, 8, 8])
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, unit: str = "dense", stride: int = 2
    ) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"out_channels must be even, got {out_channels}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        half = out_channels // 2
        self.left = make_branch(
            spatial_dims, in_channels, half, stride=stride, unit=unit, pre_pointwise=False
        )
        self.right = make_branch(
            spatial_dims, in_channels, half, stride=stride, unit=unit, pre_pointwise=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], dim=1), 2)
