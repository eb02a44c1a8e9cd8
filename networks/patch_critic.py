"""PatchGAN critics on MONAI's ``PatchDiscriminator`` and the two sides of its least-squares game.

Shared by the paired translation of :mod:`networks.translation` (a critic conditioned on the
source image: two input channels) and the VAE-GAN refinement of a glass-box decoder
(:mod:`pipelines.decoder_refinement`: one channel, the image alone). :class:`PatchCritic` only
concatenates its inputs along the channels and returns the last of the outputs MONAI's
``PatchDiscriminator`` gives (its intermediate feature maps are not used); the losses are MONAI's
``PatchAdversarialLoss`` (least squares), with the discriminator's side averaged over real and
synthetic batches as in pix2pix. Pure torch/MONAI, no file I/O.

Example:
    >>> import torch
    >>> critic = build_patch_critic(2, in_channels=1, channels=4, num_layers_d=2)
    >>> critic(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 1, 6, 6])
"""

from __future__ import annotations

from numbers import Integral

import torch
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import PatchDiscriminator
from torch import nn

__all__ = ["PatchCritic", "build_patch_critic", "adversarial_loss", "critic_loss", "generator_loss"]


class PatchCritic(nn.Module):
    """MONAI ``PatchDiscriminator`` over the channel-wise concatenation of its inputs; returns patch logits.

    Args:
        network: a ``PatchDiscriminator`` whose ``in_channels`` equal the inputs' channels together.
    """

    def __init__(self, network: PatchDiscriminator) -> None:
        super().__init__()
        self.network = network

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        """Patch logits of ``torch.cat(images, dim=1)`` (no activation; the adversarial loss applies it)."""
        return self.network(torch.cat(images, dim=1))[-1]


def build_patch_critic(
    spatial_dims: int, in_channels: int = 1, channels: int = 32, num_layers_d: int = 3, norm: str = "INSTANCE"
) -> PatchCritic:
    """A PatchGAN critic: MONAI ``PatchDiscriminator`` wrapped in :class:`PatchCritic`.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of all inputs together (1: an image; 2: source and image).
        channels: filters of the first layer (doubled at each further layer).
        num_layers_d: strided layers; each halves the patch grid.
        norm: normalisation of the hidden layers.

    Returns:
        The critic.

    Raises:
        ValueError: ``spatial_dims`` not 2/3, or ``in_channels``/``channels``/``num_layers_d`` below 1.
    """
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    for name, value in (("in_channels", in_channels), ("channels", channels), ("num_layers_d", num_layers_d)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    network = PatchDiscriminator(
        spatial_dims=spatial_dims,
        channels=int(channels),
        in_channels=int(in_channels),
        out_channels=1,
        num_layers_d=int(num_layers_d),
        norm=norm,
    )
    return PatchCritic(network)


def adversarial_loss() -> PatchAdversarialLoss:
    """MONAI's least-squares ``PatchAdversarialLoss`` (pix2pix, LSGAN), the one both workflows use."""
    return PatchAdversarialLoss(criterion="least_squares")


def critic_loss(
    loss: PatchAdversarialLoss, real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> torch.Tensor:
    """The critic's loss: the mean of its losses on real (target 1) and synthetic (target 0) patches.

    Example:
        >>> ones, zeros = torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
        >>> float(critic_loss(adversarial_loss(), ones, zeros))  # a perfect critic
        0.0
    """
    real = loss(real_logits, target_is_real=True, for_discriminator=True)
    fake = loss(fake_logits, target_is_real=False, for_discriminator=True)
    return 0.5 * (real + fake)


def generator_loss(loss: PatchAdversarialLoss, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's adversarial loss: its synthetic patches scored against the target "real".

    Example:
        >>> float(generator_loss(adversarial_loss(), torch.zeros(1, 1, 2, 2)))
        1.0
    """
    return loss(fake_logits, target_is_real=True, for_discriminator=False)
