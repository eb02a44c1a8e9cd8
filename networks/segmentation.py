"""``GlassBoxSegmenter``: the glass-box encoder with a U-Net decoder over its stages, for 2D or 3D masks.

The encoder is the :class:`~networks.encoder.ShuffleEncoder` of a size preset
(:mod:`networks.presets`), the same module (and the same parameter names, ``encoder.*``) as in
:class:`~networks.glassbox.GlassBoxNet`, so the encoder of a ``medglass pretrain`` run loads into
it unchanged. The decoder climbs back from the coarsest stage to full resolution with MONAI's
:class:`~monai.networks.nets.basic_unet.UpCat` blocks (transposed-conv upsampling, concatenation
with the encoder stage of the same resolution, two 3×3 convs); a 1×1 conv gives one logit per
class (default 2: background, lesion) for ``DiceCELoss(softmax=True, to_onehot_y=True)``.

Example:
    >>> net = GlassBoxSegmenter(spatial_dims=2, size="tiny").eval()
    >>> net(torch.rand(1, 1, 32, 48)).shape
    torch.Size([1, 2, 32, 48])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets.basic_unet import UpCat
from torch import nn

from networks.encoder import ShuffleEncoder
from networks.presets import get_preset
from networks.shuffle_units import UNIT_TYPES

__all__ = ["GlassBoxSegmenter"]

_ACT = ("relu", {"inplace": True})
_NORM = ("batch", {"affine": True})


class GlassBoxSegmenter(nn.Module):
    """Glass-box encoder + skip-connected decoder giving per-voxel class logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: logits per voxel (2 for background/lesion with a softmax).
        size: encoder/decoder preset (``"tiny"``, ``"small"``, ``"base"``, ``"tiny_fine"``); the
            decoder has one up-block per encoder stage, with the preset's ``decoder_channels``.
        unit: encoder unit, ``"dense"`` or ``"shuffle"`` (see :mod:`networks.shuffle_units`).
        freeze_encoder: no gradients for the encoder, and its batch-norm statistics stay as
            loaded (the encoder stays in eval mode when the network is put in training mode).
        decoder_channels: output channels of the up-blocks, coarsest first (one per encoder
            stage); ``None``: half the preset's ``decoder_channels`` (at least 8). Each up-block
            runs two 3×3 convs at its resolution, so the decoder, not the encoder, holds most of
            the MACs: the preset's full widths (made to reconstruct whole images) cost about
            three times the MACs for a two-class mask (``networks.summary.count_macs``).

    Raises:
        ValueError: if ``spatial_dims``, ``in_channels``, ``out_channels``, ``size`` or ``unit`` is
            out of range, naming it and its value.

    The input's spatial sizes must be multiples of :attr:`total_stride` (``forward`` says so
    otherwise); a sliding-window inferer with such a ROI takes images of any size.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        size: str = "tiny",
        unit: str = "dense",
        freeze_encoder: bool = False,
        decoder_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3) or isinstance(spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if unit not in UNIT_TYPES:
            raise ValueError(f"unit must be one of {UNIT_TYPES}, got {unit!r}")
        preset = get_preset(size)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.size = size
        self.encoder = ShuffleEncoder(
            spatial_dims, in_channels, preset.stem_channels, preset.widths, preset.depths, unit=unit
        )
        self.total_stride = self.encoder.total_stride
        skips = self.encoder.stage_channels[:-1][::-1]  # coarsest skip first
        if decoder_channels is None:
            decoder_channels = tuple(max(8, c // 2) for c in preset.decoder_channels)
        if len(decoder_channels) != len(skips) or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in decoder_channels
        ):
            raise ValueError(
                f"decoder_channels must be {len(skips)} ints >= 1 (one per encoder stage), got {decoder_channels!r}"
            )
        self.decoder_channels = tuple(decoder_channels)
        ups = []
        ch = self.encoder.out_channels
        for skip, out in zip(skips, self.decoder_channels, strict=True):
            ups.append(
                UpCat(spatial_dims, ch, skip, out, act=_ACT, norm=_NORM, bias=False, upsample="deconv")
            )
            ch = out
        self.decoder = nn.ModuleList(ups)
        self.head = Convolution(spatial_dims, ch, out_channels, kernel_size=1, conv_only=True)
        self.encoder_frozen = False
        if freeze_encoder:
            self.freeze_encoder()

    def freeze_encoder(self) -> int:
        """Stop the encoder's gradients and keep it in eval mode; returns the frozen parameter count."""
        self.encoder_frozen = True
        count = 0
        for p in self.encoder.parameters():
            p.requires_grad_(False)
            count += p.numel()
        self.encoder.eval()
        return count

    def train(self, mode: bool = True) -> GlassBoxSegmenter:
        """Like :meth:`torch.nn.Module.train`, but a frozen encoder stays in eval mode."""
        super().train(mode)
        if self.encoder_frozen:
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(batch, out_channels, *spatial)`` for images ``(batch, in_channels, *spatial)``.

        Raises:
            ValueError: if the input's spatial dims or channels do not fit the network, or a
                spatial size is not a multiple of :attr:`total_stride`.
        """
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must be (batch, {self.in_channels}, {self.spatial_dims} spatial dims) for this "
                f"{self.spatial_dims}D network, got shape {str(list(x.shape))}"
            )
        for s in x.shape[2:]:
            if s % self.total_stride != 0:
                raise ValueError(
                    f"input spatial sizes must be multiples of {self.total_stride}, got {str(list(x.shape[2:]))}"
                )
        features = self.encoder.stage_features(x)
        y = features[-1]
        for index, up in enumerate(self.decoder):
            y = up(y, features[-2 - index])
        return self.head(y)
