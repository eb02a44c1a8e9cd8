"""Networks of paired image-to-image translation (pix2pix recipe), e.g. pre- → post-contrast MRI.

:func:`build_generator` wraps MONAI's ``UNet`` in :class:`ResidualTranslator`: the network
predicts a *change* that is added to its input, ``pred = source + delta(source)``, and the layer
that outputs ``delta`` starts at zero, so an untrained generator is the identity and training
only has to learn the enhancement (a contrast agent changes a few regions; most of the image
stays as it was). :func:`build_discriminator` builds MONAI's ``PatchDiscriminator`` (through
:func:`networks.patch_critic.build_patch_critic`, shared with the decoder refinement) conditioned
on the source (pix2pix: it sees ``[source, image]`` as two channels and scores every patch as
real or synthetic). Both work for ``spatial_dims`` 2 and 3. Pure torch/MONAI, no file I/O.

Example:
    >>> import torch
    >>> generator = build_generator(2, channels=(8, 16, 32))
    >>> x = torch.rand(2, 1, 32, 32)
    >>> bool(torch.equal(generator(x), x))  # untrained: the identity
    True
    >>> critic = build_discriminator(2, channels=8)
    >>> critic(x, generator(x)).shape
    torch.Size([2, 1, 2, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from monai.networks.layers import Conv
from monai.networks.nets import UNet
from torch import nn

from networks.patch_critic import PatchCritic, build_patch_critic

__all__ = [
    "ResidualTranslator",
    "ConditionalPatchDiscriminator",
    "build_generator",
    "build_discriminator",
    "generator_stride",
]


def _check_dims(spatial_dims: int) -> None:
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")


def _check_channels(channels: Sequence[int], minimum: int) -> tuple[int, ...]:
    values = tuple(channels) if isinstance(channels, Sequence) else ()
    if len(values) < minimum or not all(
        isinstance(c, Integral) and not isinstance(c, bool) and c > 0 for c in values
    ):
        raise ValueError(f"channels must be at least {minimum} positive ints, got {channels!r}")
    return tuple(int(c) for c in values)


def generator_stride(channels: Sequence[int]) -> int:
    """Total down-sampling of :func:`build_generator`'s UNet: ``2 ** (len(channels) - 1)``.

    Every side of the input must be divisible by it.

    Example:
        >>> generator_stride((16, 32, 64, 128))
        8
    """
    return 2 ** (len(tuple(channels)) - 1)


class ResidualTranslator(nn.Module):
    """``source + head(act(body(source)))`` with a zero-initialised 1×1 convolution as ``head``.

    Args:
        body: a network mapping ``(B, in_channels, *spatial)`` to ``(B, features, *spatial)``.
        spatial_dims: 2 or 3.
        features: channels ``body`` outputs.
        out_channels: channels of the change added to the input (equal to the input's).
    """

    def __init__(self, body: nn.Module, spatial_dims: int, features: int, out_channels: int = 1) -> None:
        super().__init__()
        _check_dims(spatial_dims)
        self.body = body
        self.act = nn.PReLU()
        self.head = Conv[Conv.CONV, spatial_dims](features, out_channels, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def delta(self, source: torch.Tensor) -> torch.Tensor:
        """The change the network adds to ``source`` (the predicted enhancement)."""
        return self.head(self.act(self.body(source)))

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """The synthetic image ``source + delta(source)``, shape of ``source``."""
        return source + self.delta(source)


class ConditionalPatchDiscriminator(PatchCritic):
    """MONAI ``PatchDiscriminator`` that scores an image given its source (two input channels).

    A :class:`~networks.patch_critic.PatchCritic` (shared with the decoder refinement) whose
    ``forward`` names its two inputs.

    Args:
        network: a ``PatchDiscriminator`` with ``in_channels`` = source + image channels.
    """

    def forward(self, source: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Patch logits (no activation; MONAI's ``PatchAdversarialLoss`` applies it)."""
        return super().forward(source, image)


def build_generator(
    spatial_dims: int,
    channels: Sequence[int] = (16, 32, 64, 128),
    num_res_units: int = 2,
    norm: str = "INSTANCE",
    dropout: float = 0.0,
) -> ResidualTranslator:
    """A residual 1 → 1 channel translator around MONAI's ``UNet``.

    Args:
        spatial_dims: 2 or 3.
        channels: UNet channels per level (stride 2 between levels; see :func:`generator_stride`).
        num_res_units: residual units per UNet block.
        norm: UNet normalisation (instance norm as in pix2pix).
        dropout: UNet dropout.

    Returns:
        A :class:`ResidualTranslator`; untrained it returns its input unchanged.

    Raises:
        ValueError: ``spatial_dims`` not 2/3, fewer than two ``channels`` or a negative
            ``num_res_units``.

    Example:
        >>> build_generator(3, channels=(4, 8))(torch.zeros(1, 1, 8, 8, 8)).shape
        torch.Size([1, 1, 8, 8, 8])
    """
    _check_dims(spatial_dims)
    chans = _check_channels(channels, 2)
    if isinstance(num_res_units, bool) or not isinstance(num_res_units, Integral) or num_res_units < 0:
        raise ValueError(f"num_res_units must be an int >= 0, got {num_res_units!r}")
    body = UNet(
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=chans[0],
        channels=chans,
        strides=(2,) * (len(chans) - 1),
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
    )
    return ResidualTranslator(body, spatial_dims, features=chans[0], out_channels=1)


def build_discriminator(
    spatial_dims: int, channels: int = 32, num_layers_d: int = 3, norm: str = "INSTANCE"
) -> ConditionalPatchDiscriminator:
    """A conditional PatchGAN critic: MONAI ``PatchDiscriminator`` over ``[source, image]``.

    Args:
        spatial_dims: 2 or 3.
        channels: filters of the first layer (doubled at each further layer).
        num_layers_d: strided layers; each halves the patch grid.
        norm: normalisation of the hidden layers.

    Returns:
        A :class:`ConditionalPatchDiscriminator` whose ``forward(source, image)`` returns patch logits.

    Raises:
        ValueError: ``spatial_dims`` not 2/3, or ``channels``/``num_layers_d`` below 1.

    Example:
        >>> d = build_discriminator(2, channels=4, num_layers_d=2)
        >>> d(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 6, 6])
    """
    critic = build_patch_critic(
        spatial_dims, in_channels=2, channels=channels, num_layers_d=num_layers_d, norm=norm
    )
    return ConditionalPatchDiscriminator(critic.network)
