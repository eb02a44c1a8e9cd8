"""Classifier heads that read the latent mean, and the per-latent contributions of a linear head."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["HEAD_TYPES", "make_head", "latent_contributions"]

HEAD_TYPES = ("linear", "mlp")
"""``linear`` (default, glass-box) or ``mlp`` (one hidden ReLU layer)."""


def make_head(head: str, latent_dim: int, num_classes: int, hidden: int = 32) -> nn.Module:
    """Build a classifier head on the latent mean.

    Args:
        head: ``"linear"`` — ``nn.Linear(latent_dim, num_classes)``, so logit ``k`` is
            ``bias[k] + sum_j weight[k, j] * mu[j]`` and each term can be shown;
            ``"mlp"`` — Linear → ReLU → Linear with ``hidden`` units (not decomposable).
        latent_dim: size of the latent mean.
        num_classes: number of logits.
        hidden: hidden width of the MLP head.

    Returns:
        The head module.

    Raises:
        ValueError: if ``head`` is unknown.

    Example:
        >>> make_head("linear", 16, 3)
        Linear(in_features=16, out_features=3, bias=True)
    """
    if head == "linear":
        return nn.Linear(latent_dim, num_classes)
    if head == "mlp":
        return nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes)
        )
    raise ValueError(f"head must be one of {HEAD_TYPES}, got {head!r}")


def latent_contributions(head: nn.Module, mu: torch.Tensor) -> torch.Tensor:
    """Contribution of each latent to each logit of a linear head: ``weight[k, j] * mu[b, j]``.

    Summed over the last axis the contributions give the logits minus the bias.

    Args:
        head: an ``nn.Linear`` head.
        mu: latent means, ``(batch, latent_dim)``.

    Returns:
        Tensor of shape ``(batch, num_classes, latent_dim)``.

    Raises:
        TypeError: if ``head`` is not ``nn.Linear``.
        ValueError: if ``mu`` is not ``(batch, head.in_features)``.

    Example:
        >>> head = nn.Linear(4, 2)
        >>> latent_contributions(head, torch.ones(3, 4)).shape
        torch.Size([3, 2, 4])
    """
    if not isinstance(head, nn.Linear):
        raise TypeError(
            f"head: latent contributions need a linear head (head='linear'), got {type(head).__name__}"
        )
    if mu.dim() != 2 or mu.shape[1] != head.in_features:
        raise ValueError(f"mu: expected shape (batch, {head.in_features}), got {tuple(mu.shape)}")
    return mu.unsqueeze(1) * head.weight.unsqueeze(0)
