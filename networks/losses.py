"""Losses of the glass-box network: reconstruction, (capacity-annealed) β-KL and semi-supervised CE.

Pure functions plus :class:`GlassBoxLoss`, a small ``nn.Module`` that combines them
and returns every term, so handlers can log them separately:

``loss = recon + beta * |KL - C(t)| + ce_weight * CE``

* ``recon``: MSE or L1 between the reconstruction and the *unerased* target image
  (context modelling: the input may have erased patches, the target does not),
  optionally plus ``ssim_weight`` × MONAI's ``SSIMLoss``.
* ``KL``: KL divergence of ``N(mu, exp(logvar))`` from ``N(0, I)``, summed over the
  latent dimensions and averaged over the batch.
* ``C(t)``: capacity of Burgess et al. 2018 ("Understanding disentangling in
  β-VAE"), rising linearly from 0 to ``c_max`` nats over ``c_steps`` iterations;
  ``c_max == 0`` gives the plain β-VAE term ``beta * KL``.
* ``CE``: cross-entropy over the samples whose label is >= 0 (``-1`` marks an
  unlabelled image); 0, with a defined gradient, when no sample is labelled.

The pixel term is reduced per image by ``"sum"`` (default, the ELBO scale used
by the β-VAE papers, so ``beta = 1`` is the plain VAE) or ``"mean"``, then
averaged over the batch. Written here because the β-VAE capacity schedule and
the label-masked CE are not in MONAI or ignite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss
from torch import nn

from networks.keys import Keys

__all__ = [
    "reconstruction_loss",
    "kl_per_dim",
    "capacity_at",
    "beta_kl",
    "masked_cross_entropy",
    "GlassBoxLoss",
]

_RECON_KINDS = ("mse", "l1")
_REDUCTIONS = ("sum", "mean")


def reconstruction_loss(
    recon: torch.Tensor, target: torch.Tensor, kind: str = "mse", reduction: str = "sum"
) -> torch.Tensor:
    """Pixel reconstruction loss, reduced per image then averaged over the batch.

    Args:
        recon: reconstructions, ``(batch, channel, *spatial)``.
        target: the unerased images, same shape.
        kind: ``"mse"`` (squared error) or ``"l1"`` (absolute error).
        reduction: ``"sum"`` over the voxels of each image, or ``"mean"``.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: unknown ``kind``/``reduction`` or shapes that differ.

    Example:
        >>> reconstruction_loss(torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)).item()
        4.0
    """
    if kind not in _RECON_KINDS:
        raise ValueError(f"kind must be one of {_RECON_KINDS}, got {kind!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if recon.shape != target.shape:
        raise ValueError(
            f"target: expected the reconstruction's shape {tuple(recon.shape)}, got {tuple(target.shape)}"
        )
    err = (recon - target).pow(2) if kind == "mse" else (recon - target).abs()
    per_image = err.flatten(1).sum(1) if reduction == "sum" else err.flatten(1).mean(1)
    return per_image.mean()


def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) per latent dimension, averaged over the batch.

    ``0.5 * (mu² + exp(logvar) - logvar - 1)``, in nats.

    Args:
        mu: latent means, ``(batch, latent_dim)``.
        logvar: latent log-variances, same shape.

    Returns:
        Tensor ``(latent_dim,)``.

    Example:
        >>> kl_per_dim(torch.zeros(4, 3), torch.zeros(4, 3)).tolist()
        [0.0, 0.0, 0.0]
    """
    return (0.5 * (mu.pow(2) + logvar.exp() - logvar - 1.0)).mean(0)


def capacity_at(step: int, c_max: float, c_steps: int) -> float:
    """Capacity ``C(t) = c_max * min(1, step / c_steps)`` of Burgess et al. 2018.

    Args:
        step: training iteration (>= 0).
        c_max: final capacity in nats (>= 0; 0 disables annealing).
        c_steps: iterations to reach ``c_max`` (>= 1).

    Returns:
        The capacity in nats.

    Raises:
        ValueError: negative ``step`` or ``c_max``, or ``c_steps`` < 1.

    Example:
        >>> capacity_at(50, 25.0, 100)
        12.5
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if c_max < 0:
        raise ValueError(f"c_max must be >= 0, got {c_max}")
    if c_steps < 1:
        raise ValueError(f"c_steps must be >= 1, got {c_steps}")
    return float(c_max) * min(1.0, step / c_steps)


def beta_kl(kl: torch.Tensor, beta: float, capacity: float = 0.0) -> torch.Tensor:
    """``beta * |kl - capacity|``; with ``capacity == 0`` this is the plain β-VAE ``beta * kl`` (KL >= 0).

    Args:
        kl: total KL (scalar tensor).
        beta: weight (>= 0).
        capacity: target KL in nats.

    Returns:
        Scalar tensor.

    Example:
        >>> beta_kl(torch.tensor(3.0), beta=2.0, capacity=5.0).item()
        4.0
    """
    return beta * (kl - capacity).abs()


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_below: int = 0) -> torch.Tensor:
    """Mean cross-entropy over the samples whose label is >= ``ignore_below`` (-1 = unlabelled).

    Args:
        logits: ``(batch, num_classes)``.
        labels: integer class indices ``(batch,)`` (or ``(batch, 1)``); negative means no label.
        ignore_below: labels below this value are skipped.

    Returns:
        Scalar tensor; ``0`` (still connected to ``logits``, so ``backward`` works) if no sample is labelled.

    Raises:
        ValueError: if ``labels`` does not hold one label per sample.

    Example:
        >>> masked_cross_entropy(torch.zeros(2, 3), torch.tensor([-1, -1])).item()
        0.0
    """
    labels = labels.reshape(-1).long() if labels.dim() > 1 else labels.long()
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels: expected {logits.shape[0]} labels (one per sample), got {labels.shape[0]}")
    keep = labels >= ignore_below
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[keep], labels[keep])


class GlassBoxLoss(nn.Module):
    """Total loss of :class:`~networks.glassbox.GlassBoxNet` with every term returned.

    Args:
        beta: weight of the KL term.
        c_max: final KL capacity in nats (0: plain β-VAE).
        c_steps: iterations over which the capacity rises to ``c_max``.
        recon_kind: ``"mse"`` or ``"l1"``.
        recon_reduction: ``"sum"`` (per image, ELBO scale) or ``"mean"``.
        ssim_weight: weight of MONAI's ``SSIMLoss`` (0 disables it). SSIM loss is about
            [0, 1] per image, so with ``"sum"`` choose a weight of the order of the voxel count.
        ce_weight: weight of the cross-entropy term.
        spatial_dims: 2 or 3 (for SSIM).
        data_range: intensity range of the images (for SSIM).
        spatial_beta: weight of the KL of the latent grid (``spatial_mu``/``spatial_logvar``,
            summed over cells) when the outputs come from
            :class:`~networks.spatial_glassbox.SpatialGlassBoxNet`; there ``beta`` and the capacity
            apply to the global code (``global_mu``/``global_logvar``). Small, as in MONAI's
            ``AutoencoderKL`` recipes: the grid must keep the few cells of a small finding.
        attention_weight: weight of an L1 sparsity term on the attention map (its mean value
            over the batch, ``outputs["attention"]``, in [0, 1]); 0 (default) disables it. A
            sigmoid map that must stay low where nothing is found has to single out the cells
            the classifier reads, so the map points at the finding (``medglass explain --datalist``
            scores where it points against the lesion masks).

    Raises:
        ValueError: for out-of-range weights or unknown options.

    Example:
        >>> loss_fn = GlassBoxLoss(beta=4.0, c_max=25.0, c_steps=1000)
        >>> out = {"recon": torch.zeros(2, 1, 8, 8), "mu": torch.zeros(2, 4), "logvar": torch.zeros(2, 4),
        ...        "logits": torch.zeros(2, 2)}
        >>> terms = loss_fn(out, torch.zeros(2, 1, 8, 8), torch.tensor([1, -1]), step=500)
        >>> round(terms["capacity"].item(), 1), round(terms["loss"].item(), 3)
        (12.5, 50.693)
    """

    def __init__(
        self,
        beta: float = 1.0,
        c_max: float = 0.0,
        c_steps: int = 10000,
        recon_kind: str = "mse",
        recon_reduction: str = "sum",
        ssim_weight: float = 0.0,
        ce_weight: float = 1.0,
        spatial_dims: int = 2,
        data_range: float = 1.0,
        attention_weight: float = 0.0,
        spatial_beta: float = 1e-3,
    ) -> None:
        super().__init__()
        for name, value in (
            ("beta", beta),
            ("ssim_weight", ssim_weight),
            ("ce_weight", ce_weight),
            ("attention_weight", attention_weight),
            ("spatial_beta", spatial_beta),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        capacity_at(0, c_max, c_steps)  # validates c_max and c_steps
        if recon_kind not in _RECON_KINDS:
            raise ValueError(f"recon_kind must be one of {_RECON_KINDS}, got {recon_kind!r}")
        if recon_reduction not in _REDUCTIONS:
            raise ValueError(f"recon_reduction must be one of {_REDUCTIONS}, got {recon_reduction!r}")
        self.beta, self.c_max, self.c_steps = float(beta), float(c_max), int(c_steps)
        self.recon_kind, self.recon_reduction = recon_kind, recon_reduction
        self.ssim_weight, self.ce_weight = float(ssim_weight), float(ce_weight)
        self.attention_weight = float(attention_weight)
        self.spatial_beta = float(spatial_beta)
        self.ssim = SSIMLoss(spatial_dims=spatial_dims, data_range=data_range) if ssim_weight > 0 else None
        self.iteration = 0
        """Step used when ``forward`` gets no ``step`` (a handler can set it from ``engine.state.iteration``)."""

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        target: torch.Tensor,
        labels: torch.Tensor | None = None,
        step: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute every term.

        Args:
            outputs: the network's output dict (``recon``, ``mu``, ``logvar``, ``logits``; and
                ``attention`` when ``attention_weight`` > 0).
            target: the unerased images the reconstruction is compared with.
            labels: class indices with -1 for unlabelled samples; ``None``: no CE term.
            step: training iteration for the capacity schedule (default: ``self.iteration``).

        Returns:
            Dict with scalar tensors ``loss``, ``recon``, ``kl`` (total nats; of the global code
            for the spatial core), ``kl_grid`` (the latent grid's KL, 0 for the vector core),
            ``ce``, ``capacity`` and the vector ``kl_per_dim`` (one per ``mu`` dimension: for the
            spatial core each grid channel's KL summed over cells, then the global code's).

        Raises:
            KeyError: ``attention_weight`` > 0 and ``outputs`` holds no ``attention`` map.
        """
        recon = reconstruction_loss(
            outputs[Keys.RECON], target, kind=self.recon_kind, reduction=self.recon_reduction
        )
        if self.ssim is not None:
            recon = recon + self.ssim_weight * self.ssim(outputs[Keys.RECON], target)
        spatial = "spatial_mu" in outputs  # the spatial-latent core: a grid plus a global code
        if spatial:
            global_per_dim = kl_per_dim(outputs["global_mu"], outputs["global_logvar"])
            grid = outputs["spatial_mu"].shape[:2]
            grid_per_channel = kl_per_dim(
                outputs["spatial_mu"].reshape(*grid, -1), outputs["spatial_logvar"].reshape(*grid, -1)
            ).sum(dim=1)
            grid_kl = grid_per_channel.sum()
            kl = global_per_dim.sum()
            per_dim = torch.cat([grid_per_channel, global_per_dim])
        else:
            per_dim = kl_per_dim(outputs[Keys.MU], outputs[Keys.LOGVAR])
            kl = per_dim.sum()
        capacity = capacity_at(self.iteration if step is None else step, self.c_max, self.c_steps)
        logits = outputs[Keys.LOGITS]
        ce = logits.sum() * 0.0 if labels is None else masked_cross_entropy(logits, labels)
        loss = recon + beta_kl(kl, self.beta, capacity) + self.ce_weight * ce
        if spatial:
            loss = loss + self.spatial_beta * grid_kl
        if self.attention_weight > 0:
            if Keys.ATTENTION not in outputs:
                raise KeyError(
                    f"attention_weight={self.attention_weight} needs the network's '{Keys.ATTENTION}' "
                    f"output, got keys {sorted(str(k) for k in outputs)}"
                )
            loss = loss + self.attention_weight * outputs[Keys.ATTENTION].mean()
        return {
            Keys.LOSS: loss,
            "recon": recon,
            "kl": kl,
            "kl_per_dim": per_dim,
            "ce": ce,
            "capacity": torch.tensor(capacity, dtype=kl.dtype, device=kl.device),
            "kl_grid": grid_kl if spatial else kl * 0.0,
        }
