"""Latent traversals: decode one latent at a time moved through its range, and rank the latents.

A traversal keeps an image's latent mean ``mu`` and moves one dimension ``d`` to
``mu[d] + v * sigma[d]`` for offsets ``v`` in ``[-span, span]`` (in units of the aggregate
posterior's standard deviation, :func:`aggregate_posterior_std`), decodes each step and reads the
classifier's probability there. With the linear head of :class:`~networks.GlassBoxNet` the
latents that matter for a decision are those with a large ``weight × value``
(:func:`rank_dimensions`); their traversals show *what* they encode.

Example:
    >>> from networks import GlassBoxNet
    >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
    >>> mu = net.eval().encode(torch.rand(1, 1, 32, 32))["mu"][0].detach()
    >>> result = latent_traversal(net, mu, torch.ones(4), dims=[0, 2], steps=5)
    >>> result.images.shape, result.probs.shape
    (torch.Size([2, 5, 1, 32, 32]), torch.Size([2, 5]))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.utils import eval_mode
from torch import nn

__all__ = [
    "ACTIVE_KL_THRESHOLD",
    "TraversalResult",
    "aggregate_posterior_std",
    "kl_per_dimension",
    "latent_traversal",
    "rank_dimensions",
]

ACTIVE_KL_THRESHOLD = 0.01
"""A latent is *active* when its mean KL to the prior exceeds this many nats.

The usual "active units" cut-off (Burda et al. 2016 use the variance of the posterior mean,
> 0.01; KL-based counts with the same 0.01 threshold are common in β-VAE work): a collapsed
latent has a posterior equal to the prior whatever the image, so its KL is ~0.
"""


@dataclass
class TraversalResult:
    """Decoded traversals of some latents of one image.

    Attributes:
        dims: the traversed latent indices, ``K`` of them.
        values: offsets from ``mu`` in units of ``sigma``, ``(K, S)``.
        images: decoded images, ``(K, S, C, *spatial)``.
        diffs: ``images`` minus the decoding of ``mu``, same shape.
        probs: probability of ``target_class`` at each step, ``(K, S)``.
        base_image: decoding of ``mu``, ``(C, *spatial)``.
        base_prob: probability of ``target_class`` at ``mu``.
        target_class: the class whose probability ``probs`` holds.
    """

    dims: list[int]
    values: torch.Tensor
    images: torch.Tensor
    diffs: torch.Tensor
    probs: torch.Tensor
    base_image: torch.Tensor
    base_prob: float
    target_class: int


def _check_latent_table(name: str, value: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() != 2 or value.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, latent_dim) with N >= 1, got {tuple(value.shape)}")


def _as_vector(name: str, value: torch.Tensor) -> torch.Tensor:
    """``(D,)`` or ``(1, D)`` → ``(D,)``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() == 2 and value.shape[0] == 1:
        value = value[0]
    if value.dim() != 1:
        raise ValueError(f"{name} must have shape (latent_dim,) or (1, latent_dim), got {tuple(value.shape)}")
    return value.detach()


def aggregate_posterior_std(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Standard deviation of each latent under the aggregate posterior ``q(z) = mean_n q(z | x_n)``.

    By the law of total variance, ``Var[z_d] = Var_n[mu_nd] + mean_n exp(logvar_nd)`` (population
    variance over the ``N`` images, so ``N = 1`` gives the posterior's own spread). It is the
    natural unit of a traversal: ``±3 sigma`` covers the codes the decoder saw in training.

    Args:
        mu: latent means, ``(N, latent_dim)``.
        logvar: latent log-variances, same shape.

    Returns:
        ``(latent_dim,)`` standard deviations.

    Raises:
        TypeError: if an argument is not a tensor.
        ValueError: if a shape is not ``(N, latent_dim)`` or the two shapes differ.

    Example:
        >>> aggregate_posterior_std(torch.tensor([[0.0], [2.0]]), torch.zeros(2, 1))
        tensor([1.4142])
    """
    _check_latent_table("mu", mu)
    _check_latent_table("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    mu, logvar = mu.detach().float(), logvar.detach().float()
    return torch.sqrt(mu.var(dim=0, correction=0) + logvar.exp().mean(dim=0))


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean KL divergence of each latent's posterior to the ``N(0, 1)`` prior, in nats.

    ``KL_d = mean_n 0.5 * (mu_nd² + exp(logvar_nd) - 1 - logvar_nd)``.

    Args:
        mu: latent means, ``(N, latent_dim)``.
        logvar: latent log-variances, same shape.

    Returns:
        ``(latent_dim,)`` KL values (>= 0).

    Raises:
        TypeError: if an argument is not a tensor.
        ValueError: if a shape is not ``(N, latent_dim)`` or the two shapes differ.

    Example:
        >>> kl_per_dimension(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))
        tensor([0.5000, 0.0000])
    """
    _check_latent_table("mu", mu)
    _check_latent_table("logvar", logvar)
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )
    mu, logvar = mu.detach().float(), logvar.detach().float()
    return (0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)).mean(dim=0)


def _check_target(target_class: int, num_classes: int) -> int:
    if isinstance(target_class, bool) or not isinstance(target_class, int):
        raise TypeError(f"target_class must be an int, got {type(target_class).__name__} {target_class!r}")
    if num_classes < 2:
        raise ValueError(f"the model must have at least 2 classes for class probabilities, got {num_classes}")
    if not 0 <= target_class < num_classes:
        raise ValueError(f"target_class must be in [0, {num_classes - 1}], got {target_class}")
    return target_class


def latent_traversal(
    model: nn.Module,
    mu: torch.Tensor,
    sigma: torch.Tensor,
    dims: Sequence[int] | None = None,
    steps: int = 7,
    span: float = 3.0,
    target_class: int = 1,
    attention: torch.Tensor | None = None,
) -> TraversalResult:
    """Decode ``mu`` with one latent at a time moved to ``mu[d] + v * sigma[d]``, ``v`` in ``[-span, span]``.

    The model runs in eval mode without gradients (its mode is restored afterwards); all steps
    of all dims are decoded in one batch.

    Args:
        model: a :class:`~networks.GlassBoxNet` (anything with ``decode`` and ``classify``).
        mu: one image's latent mean, ``(latent_dim,)`` (or ``(1, latent_dim)``).
        sigma: per-latent step unit, ``(latent_dim,)``, positive (e.g. :func:`aggregate_posterior_std`).
        dims: latents to traverse (default: all, in order).
        steps: values per latent (>= 2), evenly spaced from ``-span`` to ``span``.
        span: largest offset, in units of ``sigma`` (> 0).
        target_class: class whose softmax probability is recorded.
        attention: for a :class:`~networks.SpatialGlassBoxNet`, the image's attention map at the
            latent grid's size (``encode(x)["latent_attention"]``). ``mu`` is then the whole latent
            (``encode(x)["latent"]``), ``sigma`` and ``dims`` refer to the head's ``latent_dim``
            dimensions, and dimension ``d`` moves along :meth:`~networks.SpatialGlassBoxNet.latent_direction`
            (a pooled channel where the attention map looks, or one number of the global code).

    Returns:
        A :class:`TraversalResult`.

    Raises:
        TypeError: if ``mu``/``sigma`` is not a tensor or ``target_class`` not an int.
        ValueError: on a bad shape, a non-positive ``sigma``, ``steps`` < 2, ``span`` <= 0, a dim out of
            range or repeated, or ``target_class`` out of range.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
        >>> latent_traversal(net, torch.zeros(4), torch.ones(4), steps=3).values[0]
        tensor([-3.,  0.,  3.])
    """
    mu = _as_vector("mu", mu)
    sigma = _as_vector("sigma", sigma).to(mu)
    spatial = getattr(model, "latent_kind", "vector") == "spatial"
    latent_dim = sigma.shape[0] if spatial else mu.shape[0]
    if spatial and attention is None:
        raise ValueError(
            "attention: a spatial-latent model needs the image's attention map for traversals, got None"
        )
    if not spatial and sigma.shape != mu.shape:
        raise ValueError(f"sigma must have shape ({latent_dim},) like mu, got {tuple(sigma.shape)}")
    if not bool(torch.isfinite(sigma).all() and (sigma > 0).all()):
        raise ValueError(f"sigma must be finite and > 0 in every dim, got {sigma.tolist()}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int >= 2, got {steps!r}")
    if not span > 0:
        raise ValueError(f"span must be > 0, got {span!r}")
    dims = list(range(latent_dim)) if dims is None else [int(d) for d in dims]
    if not dims or any(not 0 <= d < latent_dim for d in dims) or len(set(dims)) != len(dims):
        raise ValueError(f"dims must be distinct indices in [0, {latent_dim - 1}], got {dims}")

    offsets = torch.linspace(-span, span, steps, dtype=mu.dtype, device=mu.device)
    k = len(dims)
    z = mu.repeat(k * steps + 1, 1)  # row 0: mu itself
    if spatial:
        att = attention.reshape(1, 1, *attention.shape[-len(model.feature_size) :]).to(mu)
        for i, d in enumerate(dims):
            direction = model.latent_direction(d, att)[0].to(mu)
            rows = slice(1 + i * steps, 1 + (i + 1) * steps)
            z[rows] += (offsets * sigma[d])[:, None] * direction[None]
    else:
        rows = torch.arange(k * steps, device=mu.device) + 1
        cols = torch.tensor(dims, device=mu.device).repeat_interleave(steps)
        z[rows, cols] += offsets.repeat(k) * sigma[cols]
    with eval_mode(model):
        images = model.decode(z).detach()
        if spatial:
            logits = model.classify_latent(z, att.expand(z.shape[0], *att.shape[1:])).detach()
        else:
            logits = model.classify(z).detach()
    target_class = _check_target(target_class, logits.shape[1])
    probs = torch.softmax(logits.float(), dim=1)[:, target_class]
    base = images[0]
    images = images[1:].reshape(k, steps, *base.shape)
    return TraversalResult(
        dims=dims,
        values=offsets.repeat(k, 1),
        images=images,
        diffs=images - base,
        probs=probs[1:].reshape(k, steps),
        base_image=base,
        base_prob=float(probs[0]),
        target_class=target_class,
    )


def rank_dimensions(
    model: nn.Module,
    mu: torch.Tensor,
    kl_per_dim: torch.Tensor | None = None,
    target_class: int = 1,
) -> list[dict]:
    """Rank the latents by how much they push one image's decision, for a linear head.

    The contribution of latent ``j`` is ``weight[t, j] * mu[j]`` for the target logit ``t`` minus
    the mean of the same term over the other classes — with two classes, its share of the logit
    difference ``logit_t - logit_other`` that the softmax turns into the probability.

    Args:
        model: a :class:`~networks.GlassBoxNet` with the linear head (``latent_contributions``).
        mu: one image's latent mean, ``(latent_dim,)`` (or ``(1, latent_dim)``).
        kl_per_dim: per-latent KL to the prior (:func:`kl_per_dimension`), or ``None``.
        target_class: class the contributions are signed towards.

    Returns:
        One dict per latent, largest ``abs_contribution`` first: ``dim``, ``contribution``,
        ``abs_contribution``, ``kl`` and ``active`` (``kl > ACTIVE_KL_THRESHOLD``; both ``None``
        without ``kl_per_dim``).

    Raises:
        TypeError: if the head is not linear, or ``target_class`` is not an int.
        ValueError: if ``kl_per_dim`` does not have one value per latent, or ``target_class`` is out of range.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
        >>> [r["dim"] for r in rank_dimensions(net, torch.tensor([0.0, 0.0, 5.0, 0.0]))][0]
        2
    """
    mu = _as_vector("mu", mu)
    with torch.no_grad():
        contrib = model.latent_contributions(mu[None])[0].float()  # (classes, latent_dim)
    target_class = _check_target(target_class, contrib.shape[0])
    others = [k for k in range(contrib.shape[0]) if k != target_class]
    signed = contrib[target_class] - contrib[others].mean(dim=0)
    if kl_per_dim is not None:
        kl_per_dim = _as_vector("kl_per_dim", kl_per_dim)
        if kl_per_dim.shape != mu.shape:
            raise ValueError(
                f"kl_per_dim must have shape ({mu.shape[0]},) like mu, got {tuple(kl_per_dim.shape)}"
            )
    ranking = []
    for j, value in enumerate(signed.tolist()):
        kl = None if kl_per_dim is None else float(kl_per_dim[j])
        ranking.append(
            {
                "dim": j,
                "contribution": value,
                "abs_contribution": abs(value),
                "kl": kl,
                "active": None if kl is None else kl > ACTIVE_KL_THRESHOLD,
            }
        )
    return sorted(ranking, key=lambda r: -r["abs_contribution"])
