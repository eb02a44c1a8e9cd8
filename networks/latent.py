"""Gaussian latent layer of the β-VAE: encoder features (+ attention map) → ``mu``, ``logvar``; reparameterisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from torch import nn

__all__ = ["GaussianLatent", "reparameterize", "remove_directions", "POOL_MODES", "CLASSIFIER_PATHS"]


POOL_MODES = ("attention", "mean", "max", "none")
"""Global pooling of the latent layer's pooled branch: attention-weighted average (default),
average, maximum, or no branch."""

CLASSIFIER_PATHS = ("pooled", "all")
"""How the classification loss reaches the encoder: through the pooled branch only (default) or both."""


class GaussianLatent(nn.Module):
    """1×1 conv reduction → flatten → linear to ``mu`` and ``logvar``, plus a globally pooled branch.

    Flattening (rather than global pooling) keeps *where* the features are, so the decoder
    can place structures again and the attention map's gating acts position by position. It
    ties the layer to one feature size.

    The pooled branch adds a linear map of a global summary of each feature channel: by
    default the *attention-weighted average* of the ungated features, ``Σ a·f / Σ a`` over
    positions, so the attention map is where the classifier reads the image (attention-based
    pooling, Ilse et al. 2018); the flattened branch then reads the ungated features. The
    ``mean``/``max`` poolings read the gated features ``f·a`` in both branches. With
    ``classifier_path="pooled"`` the classifier's input is the same ``mu`` in value, but the
    classification loss reaches the encoder only through the pooled branch: the flattened
    branch learns from reconstruction and KL alone.

    Why: with the loss reaching the flattened branch the network memorises its training images,
    and a plain global pooling learns less reliably with random flips (``medglass classify
    --latent-pool`` trains each).

    Even so the flattened branch's share of ``mu`` reaches the logits *in value*: trained by
    reconstruction alone, it varies from image to image in every latent direction, the head
    reads that as noise, and a classifier can stay at chance. ``protected``
    (``GlassBoxNet(pooled_logits=True)``, the default) takes the head's weight rows out of the
    flattened branch, so the logits come from the pooled branch alone.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the gated features.
        feature_size: spatial size of the gated features, e.g. ``(8, 8)``.
        proj_channels: channels after the 1×1 reduction.
        latent_dim: number of latent variables.
        pool: ``"attention"`` (default; ``forward`` then needs the attention map), ``"mean"``,
            ``"max"`` or ``"none"`` (flattened branch only).
        classifier_path: ``"pooled"`` (default; needs a pooled branch) or ``"all"``.

    Raises:
        ValueError: unknown ``pool`` or ``classifier_path``, or ``"pooled"`` without a branch.

    Example:
        >>> mu, logvar, _ = GaussianLatent(2, 32, (4, 4), 8, 16)(torch.zeros(3, 32, 4, 4), torch.ones(3, 1, 4, 4))
        >>> mu.shape, logvar.shape
        (torch.Size([3, 16]), torch.Size([3, 16]))
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        feature_size: Sequence[int],
        proj_channels: int,
        latent_dim: int,
        pool: str = "attention",
        classifier_path: str = "pooled",
    ) -> None:
        super().__init__()
        if pool not in POOL_MODES:
            raise ValueError(f"pool must be one of {POOL_MODES}, got {pool!r}")
        if classifier_path not in CLASSIFIER_PATHS:
            raise ValueError(f"classifier_path must be one of {CLASSIFIER_PATHS}, got {classifier_path!r}")
        if classifier_path == "pooled" and pool == "none":
            raise ValueError('classifier_path="pooled" needs a pooled branch, got pool="none"')
        self.latent_dim = latent_dim
        self.pool = pool
        self.classifier_path = classifier_path
        self.reduce = Convolution(
            spatial_dims,
            in_channels,
            proj_channels,
            kernel_size=1,
            act=("relu", {"inplace": True}),
            norm="batch",
            bias=False,
        )
        self.fc = nn.Linear(proj_channels * math.prod(feature_size), 2 * latent_dim)
        self.fc_pool = nn.Linear(in_channels, 2 * latent_dim) if pool in ("mean", "max") else None
        # its own name: a checkpoint of another pooling fails to load instead of loading silently
        self.fc_attention_pool = nn.Linear(in_channels, 2 * latent_dim) if pool == "attention" else None

    def forward(
        self,
        features: torch.Tensor,
        attention: torch.Tensor | None = None,
        protected: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mu, logvar, mu_for_classifier)``, each ``(batch, latent_dim)``.

        ``mu_for_classifier`` equals ``mu`` in value; with ``classifier_path="pooled"`` its
        gradient skips the flattened branch.

        Args:
            features: encoder features ``(batch, channels, *feature_size)``; gated by the
                attention map (``features * attention``) for the ``mean``/``max``/``none``
                poolings, as they are for ``"attention"``.
            attention: the ``(batch, 1, *feature_size)`` map in [0, 1]; required by
                ``pool="attention"``, ignored otherwise.
            protected: ``(latent_dim, r)`` orthonormal columns spanning latent directions the
                flattened branch must not move (:func:`remove_directions`): ``mu`` along them
                comes from the pooled branch alone. ``None``: no constraint.

        Raises:
            ValueError: ``pool="attention"`` without an attention map.
        """
        flat = self.fc(torch.flatten(self.reduce(features), 1))
        n = self.latent_dim
        if protected is not None:
            flat = torch.cat([remove_directions(flat[:, :n], protected), flat[:, n:]], dim=1)
        if self.fc_attention_pool is not None:
            if attention is None:
                raise ValueError('pool="attention" needs the attention map, got attention=None')
            weights = torch.flatten(attention, 2)  # (batch, 1, positions)
            weighted = (torch.flatten(features, 2) * weights).sum(dim=2) / (weights.sum(dim=2) + 1e-6)
            pooled = self.fc_attention_pool(weighted)
        elif self.fc_pool is not None:
            pooled_features = torch.flatten(features, 2)
            if self.pool == "max":
                pooled = self.fc_pool(pooled_features.amax(dim=2))
            else:
                pooled = self.fc_pool(pooled_features.mean(dim=2))
        else:
            return flat[:, :n], flat[:, n:], flat[:, :n]
        stats = flat + pooled
        mu = stats[:, :n]
        if self.classifier_path == "pooled":
            return mu, stats[:, n:], flat[:, :n].detach() + pooled[:, :n]
        return mu, stats[:, n:], mu

    def position_contributions(
        self,
        features: torch.Tensor,
        direction: torch.Tensor,
        attention: torch.Tensor | None = None,
        protected: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Split ``direction · mu`` exactly over the feature positions, ``(batch, 1, *feature_size)``.

        Both branches are linear in per-position terms: the flattened branch's linear map reads
        each position's 1×1-reduced features, and the pooled branch's global summary is a sum
        over positions (``Σ a·f / Σ a``; ``mean``: ``Σ f / N``; ``max``: each channel's maximum,
        credited to the position that holds it). Summed over positions the map gives
        ``direction · mu`` less ``direction · (fc.bias + pool.bias)[:latent_dim]``, a constant.

        Args:
            features: the features :meth:`forward` takes, ``(batch, channels, *feature_size)``.
            direction: ``(latent_dim,)`` weights on ``mu``, e.g. a row of a linear head.
            attention: the attention map; required by ``pool="attention"``, ignored otherwise.
            protected: the directions :meth:`forward` took out of the flattened branch (the
                same ``protected``), so that the split matches that ``mu``.

        Returns:
            The per-position shares ``(batch, 1, *feature_size)``.

        Raises:
            ValueError: ``direction`` of the wrong shape, or ``pool="attention"`` without an
                attention map.

        Example:
            >>> layer = GaussianLatent(2, 8, (4, 4), 4, 3, pool="mean").eval()
            >>> f, d = torch.randn(2, 8, 4, 4), torch.randn(3)
            >>> shares = layer.position_contributions(f, d).flatten(1).sum(1)
            >>> offset = d @ (layer.fc.bias + layer.fc_pool.bias)[:3]
            >>> torch.allclose(shares + offset, layer(f)[0] @ d, atol=1e-5)
            True
        """
        n = self.latent_dim
        if direction.shape != (n,):
            raise ValueError(f"direction: expected shape ({n},), got {tuple(direction.shape)}")
        reduced = self.reduce(features)
        # the projection is symmetric: direction · P(flat) = P(direction) · flat
        flat_direction = direction if protected is None else remove_directions(direction, protected)
        flat_weights = (flat_direction @ self.fc.weight[:n]).view(reduced.shape[1:])
        shares = (reduced * flat_weights).sum(dim=1, keepdim=True)
        pool_layer = self.fc_attention_pool if self.fc_attention_pool is not None else self.fc_pool
        if pool_layer is None:
            return shares
        per_position = torch.einsum("c,bc...->b...", direction @ pool_layer.weight[:n], features).unsqueeze(1)
        if self.fc_attention_pool is not None:
            if attention is None:
                raise ValueError('pool="attention" needs the attention map, got attention=None')
            total = torch.flatten(attention, 1).sum(dim=1) + 1e-6
            return shares + attention * per_position / total.view(-1, *[1] * (attention.dim() - 1))
        if self.pool == "mean":
            return shares + per_position / math.prod(features.shape[2:])
        # max: each channel's maximum is credited to the position holding it
        flat_features = torch.flatten(features, 2)
        winner = torch.zeros_like(flat_features).scatter_(2, flat_features.argmax(dim=2, keepdim=True), 1.0)
        channel_weights = (direction @ pool_layer.weight[:n]).view(1, -1, 1)
        credited = (winner * flat_features * channel_weights).sum(dim=1, keepdim=True)
        return shares + credited.view_as(shares)


def remove_directions(vectors: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Project ``vectors`` onto the orthogonal complement of ``basis``'s columns: ``v - B Bᵀ v``.

    Args:
        vectors: ``(..., d)`` row vectors.
        basis: ``(d, r)`` orthonormal columns.

    Returns:
        ``vectors`` without their components along the columns of ``basis``, same shape.

    Example:
        >>> remove_directions(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0], [0.0]])).tolist()
        [[0.0, 4.0]]
    """
    return vectors - (vectors @ basis) @ basis.t()


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)`` (Kingma & Welling 2014).

    Args:
        mu: latent means, ``(batch, latent_dim)``.
        logvar: latent log-variances, same shape.

    Returns:
        One sample per row, same shape as ``mu``.

    Example:
        >>> reparameterize(torch.zeros(2, 3), torch.full((2, 3), -1e4)).abs().max().item()
        0.0
    """
    return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
