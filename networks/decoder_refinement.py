"""The generator side of a VAE-GAN refinement of a glass-box decoder: frozen encoder, trainable decoder.

A trained glass-box network draws blurred images: its decoder was fitted with a pixel loss only.
The refinement (:mod:`pipelines.decoder_refinement`, on MONAI's ``AdversarialTrainer``) trains the
**decoder alone** against a PatchGAN critic (:mod:`networks.patch_critic`). Everything the
classifier reads — encoder, attention, latent layers, head — stays frozen, so latent codes and
predictions of real images are those of the original network, bit for bit.

* :class:`FrozenEncoderDecoder` is the ``g_network`` MONAI's trainer drives: images in; out the
  decoded posterior means of those images (their reconstructions) followed by decoded draws from a
  latent sampler (the run's aggregate-posterior prior, :func:`pipelines.generation.sample_latents`),
  so the critic judges both what ``medglass generate --source posterior`` and what ``--source
  aggregate`` draws. Its ``train()`` puts only the decoder in training mode: the trainer calls it
  every iteration, and the frozen batch-norm statistics of the encoder must not move.
* :class:`RefinementReconstructionLoss` is the trainer's ``recon_loss_function``: the project's
  reconstruction loss (:func:`networks.losses.reconstruction_loss`, MSE summed per image, as
  training uses) on the reconstructions, plus an optional feature-matching term — the mean squared
  distance between the frozen encoder's last feature maps of the reconstruction and of the real
  image (a perceptual loss on the project's own encoder; nothing downloaded). The term also keeps
  ``encode(decode(z))`` close to ``encode(x)``, i.e. what the classifier reads from a decoded image.

Hand-written because MONAI's trainer takes one generator module and one loss callable; these are the
thin adapters between them and the glass-box network. Pure torch, no file I/O.

Example:
    >>> import torch
    >>> from networks.glassbox import GlassBoxNet
    >>> net = GlassBoxNet(2, 1, 2, (32, 32), size="tiny", latent_dim=4)
    >>> g = FrozenEncoderDecoder(net, sampler=lambda n: torch.zeros(n, 4), prior_share=0.5)
    >>> g.train()(torch.rand(4, 1, 32, 32)).shape  # 4 reconstructions + 4 prior draws
    torch.Size([8, 1, 32, 32])
    >>> net.encoder.training, net.decoder.training
    (False, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from networks.losses import reconstruction_loss

__all__ = ["FrozenEncoderDecoder", "RefinementReconstructionLoss", "freeze_all_but_decoder", "prior_count"]


def freeze_all_but_decoder(network: nn.Module) -> list[nn.Parameter]:
    """Turn gradients off for every parameter outside ``network.decoder``; returns the decoder's parameters.

    Raises:
        ValueError: the network has no ``decoder`` module with parameters.
    """
    decoder = getattr(network, "decoder", None)
    if not isinstance(decoder, nn.Module) or not any(True for _ in decoder.parameters()):
        raise ValueError(f"network: {type(network).__name__} has no decoder module with parameters to refine")
    for p in network.parameters():
        p.requires_grad_(False)
    trainable = list(decoder.parameters())
    for p in trainable:
        p.requires_grad_(True)
    return trainable


def prior_count(batch: int, prior_share: float) -> int:
    """Prior draws added to a batch of ``batch`` reconstructions so that they are ``prior_share`` of all fakes.

    Example:
        >>> prior_count(16, 0.5), prior_count(16, 0.0), prior_count(3, 0.25)
        (16, 0, 1)
    """
    if prior_share <= 0:
        return 0
    return max(1, int(math.floor(batch * prior_share / (1.0 - prior_share) + 0.5)))


class FrozenEncoderDecoder(nn.Module):
    """Images → ``[decode(posterior mean of each image), decode(sampler(k))]`` with only the decoder trainable.

    Args:
        network: a glass-box network (``encode(x)["latent"]`` is the whole latent mean that
            ``decode`` draws; ``decoder`` the module refined).
        sampler: ``n → (n, latent_size)`` latents to decode besides the reconstructions (``None``:
            reconstructions only).
        prior_share: share of the decoded outputs drawn from ``sampler`` in training mode, in
            ``[0, 1)`` (see :func:`prior_count`); in eval mode the output holds reconstructions only.

    Raises:
        ValueError: ``prior_share`` outside ``[0, 1)``, or a positive share without a sampler.
    """

    def __init__(
        self,
        network: nn.Module,
        sampler: Callable[[int], torch.Tensor] | None = None,
        prior_share: float = 0.5,
    ) -> None:
        super().__init__()
        if not 0.0 <= float(prior_share) < 1.0:
            raise ValueError(f"prior_share must be in [0, 1), got {prior_share!r}")
        if prior_share > 0 and sampler is None:
            raise ValueError("prior_share > 0 needs a latent sampler, got sampler=None")
        self.network = network
        self.sampler = sampler
        self.prior_share = float(prior_share)
        self.train(False)

    def train(self, mode: bool = True) -> FrozenEncoderDecoder:
        """Training mode for the decoder only; everything else stays in eval mode (frozen statistics)."""
        self.training = mode
        self.network.eval()
        self.network.decoder.train(mode)
        return self

    def posterior_latent(self, images: torch.Tensor) -> torch.Tensor:
        """The whole latent mean of each image (frozen encoder, no gradient)."""
        with torch.no_grad():
            return self.network.encode(images)["latent"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstructions of ``images`` then (training mode) the decoded sampler draws, ``(B + k, C, *spatial)``."""
        latents = self.posterior_latent(images)
        k = prior_count(images.shape[0], self.prior_share) if self.training else 0
        if k and self.sampler is not None:
            drawn = self.sampler(k).to(device=latents.device, dtype=latents.dtype)
            latents = torch.cat([latents, drawn])
        return self.network.decode(latents)


class RefinementReconstructionLoss(nn.Module):
    """``recon_weight × reconstruction + feature_weight × feature matching`` on the reconstructions.

    Called as ``loss(fakes, targets)``: the first ``len(targets)`` fakes are the reconstructions of
    the targets (:class:`FrozenEncoderDecoder` puts them first); the prior draws have no target.
    The terms of the last call are kept in :attr:`terms` (detached) for logging.

    Args:
        network: the glass-box network whose frozen ``encoder`` gives the features.
        recon_weight: weight of :func:`networks.losses.reconstruction_loss` (``>= 0``).
        feature_weight: weight of the encoder-feature term (``>= 0``; 0 skips the encoder pass).
        kind: ``"mse"`` or ``"l1"`` (the reconstruction loss's kind).
        reduction: ``"sum"`` per image (training's scale) or ``"mean"``.

    Raises:
        ValueError: a negative weight, or both weights 0.
    """

    def __init__(
        self,
        network: nn.Module,
        recon_weight: float = 1.0,
        feature_weight: float = 0.0,
        kind: str = "mse",
        reduction: str = "sum",
    ) -> None:
        super().__init__()
        for name, value in (("recon_weight", recon_weight), ("feature_weight", feature_weight)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if recon_weight == 0 and feature_weight == 0:
            raise ValueError(
                "recon_weight and feature_weight must not both be 0 (nothing ties a decoded image to its code)"
            )
        self.network = network
        self.recon_weight = float(recon_weight)
        self.feature_weight = float(feature_weight)
        self.kind, self.reduction = kind, reduction
        self.terms: dict[str, float] = {}

    def forward(self, fakes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The weighted sum (scalar); :attr:`terms` gets ``recon`` and ``feature``."""
        recon = fakes[: targets.shape[0]]
        pixel = reconstruction_loss(recon, targets, kind=self.kind, reduction=self.reduction)
        feature = pixel.new_zeros(())
        if self.feature_weight > 0:
            with torch.no_grad():
                real = self.network.encoder(targets)
            feature = (self.network.encoder(recon) - real).pow(2).mean()
        self.terms = {"recon": float(pixel.detach()), "feature": float(feature.detach())}
        return self.recon_weight * pixel + self.feature_weight * feature
