"""Decoder of the glass-box network: latent vector → feature map → upsampling blocks → image."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

__all__ = ["OUTPUT_ACTIVATIONS", "UPSAMPLE_MODES", "LatentDecoder"]

OUTPUT_ACTIVATIONS = ("identity", "sigmoid")
"""``identity`` (default) or ``sigmoid`` output of :class:`LatentDecoder`."""

UPSAMPLE_MODES = ("resize", "deconv")
"""``resize`` (nearest ×2 then 3×3 conv, default) or ``deconv`` (2×2 stride-2 transposed conv)."""


class LatentDecoder(nn.Module):
    """Linear → ``(C, *feature_size)`` map → per stage: ×2 upsampling + 3×3 convs → 3×3 conv to the image.

    Upsampling is resize-convolution by default (MONAI ``UpSample`` in ``nontrainable``
    nearest mode followed by a 3×3 conv), which avoids the checkerboard artefacts of
    transposed convs (Odena et al., Distill 2016); ``upsample="deconv"`` uses
    MONAI's transposed conv instead.

    With ``subpixel_output=True`` the last stage is a sub-pixel convolution instead
    (MONAI ``UpSample`` in ``pixelshuffle`` mode: one 3×3 conv at half resolution to
    ``out_channels × 2**spatial_dims`` channels, ICNR-initialised against checkerboard
    artefacts, then a pixel shuffle; Shi et al., CVPR 2016): no convolution runs at the
    image's full resolution, which on a CPU is most of a small decoder's training time.

    The output is linear (``output_act="identity"``) by default: inputs are
    expected scaled to about [0, 1] by the transforms, and a linear output neither
    saturates nor clips intensities that fall outside that range (CT windows, MR
    z-scores). ``"sigmoid"`` bounds the output to (0, 1) for strictly [0, 1] data.

    Args:
        spatial_dims: 2 or 3.
        latent_dim: size of the latent vector.
        out_channels: image channels.
        feature_size: spatial size of the first feature map (image size / 2**len(channels)).
        channels: channels of each stage, coarsest first; each stage doubles the size.
        convs_per_stage: 3×3 convs after each upsampling.
        upsample: ``"resize"`` or ``"deconv"``.
        output_act: ``"identity"`` or ``"sigmoid"``.
        subpixel_output: make the last stage a sub-pixel convolution straight to the image.

    Raises:
        ValueError: if ``upsample`` or ``output_act`` is unknown.

    Example:
        >>> dec = LatentDecoder(2, 16, 1, (4, 4), (32, 16))
        >>> dec(torch.zeros(2, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        spatial_dims: int,
        latent_dim: int,
        out_channels: int,
        feature_size: Sequence[int],
        channels: Sequence[int],
        convs_per_stage: int = 1,
        upsample: str = "resize",
        output_act: str = "identity",
        subpixel_output: bool = False,
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        if output_act not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"output_act must be one of {OUTPUT_ACTIVATIONS}, got {output_act!r}")
        self.map_shape = [int(channels[0])] + [int(s) for s in feature_size]
        self.fc = nn.Linear(latent_dim, math.prod(self.map_shape))
        self.use_sigmoid = output_act == "sigmoid"
        act = ("relu", {"inplace": True})
        layers: list[nn.Module] = []
        ch = int(channels[0])
        stages = list(channels[1:]) + [channels[-1]]
        if subpixel_output:
            stages = stages[:-1]
        for nxt in stages:
            if upsample == "resize":
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
            else:
                layers.append(UpSample(spatial_dims, ch, ch, scale_factor=2, mode="deconv"))
            for i in range(convs_per_stage):
                out = int(nxt) if i == convs_per_stage - 1 else ch
                layers.append(Convolution(spatial_dims, ch, out, act=act, norm="batch", bias=False))
            ch = int(nxt)
        if subpixel_output:
            subpixel = UpSample(
                spatial_dims, ch, out_channels, scale_factor=2, mode="pixelshuffle", apply_pad_pool=False
            )
            # MONAI initialises the weights with ICNR (each sub-pixel position sees the same kernel),
            # but not the bias: zeroed here so that the first output is checkerboard-free too.
            nn.init.zeros_(subpixel.pixelshuffle.conv_block.bias)
            layers.append(subpixel)
        else:
            layers.append(Convolution(spatial_dims, ch, out_channels, kernel_size=3, conv_only=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shape = [z.shape[0]] + self.map_shape
        out = self.layers(torch.relu(self.fc(z)).reshape(shape))
        if self.use_sigmoid:
            out = torch.sigmoid(out)
        return out
