"""Counterfactual images by latent shift (Cohen et al. 2021, "Gifsplanation via Latent Shift").

Encode the image to its latent mean (``encode(x)["latent"]``: the whole latent the decoder draws —
the latent grid and global code of :class:`~networks.SpatialGlassBoxNet`, ``mu`` itself for
:class:`~networks.GlassBoxNet`), then walk it along the gradient that moves the classifier towards
the other decision, decoding every step. The logit of a latent is ``classify_latent(latent,
attention)`` under the image's attention map, which is linear for the spatial core: the walk then
moves the latent cells under the attention map, where the decoder draws the change. The difference between the last
step and the reconstruction of ``mu`` shows what would have to change in the image for the
decision to flip; the walk itself is a "gif" of the change.

:class:`~networks.GlassBoxNet` classifies ``mu`` directly, so the gradient is that of the head
with respect to the latent (no decoder → encoder round trip as in the paper, where the
classifier reads images); it is recomputed at every step, so MLP heads work too. As a check,
:attr:`CounterfactualResult.reencoded_prob` is the probability the *whole* network gives the final
counterfactual image.

Example:
    >>> from networks import GlassBoxNet
    >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8)
    >>> result = latent_shift_counterfactual(net, torch.rand(1, 1, 32, 32), max_steps=200)
    >>> result.flipped, result.images.shape[1:]
    (True, torch.Size([1, 32, 32]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.networks.utils import eval_mode
from torch import nn

from evaluation.latent_traversal import _as_vector, _check_target

__all__ = ["CounterfactualResult", "latent_shift_counterfactual", "target_log_odds"]

_DECODE_CHUNK = 16

_BACKTRACKS = 16

READOUTS = ("latent", "image")

FOCUSES = ("all", "attention", "contribution")
"""What the walk may move: the whole latent, or (spatial core) the grid cells under the attention map."""
"""How the walk reads the decision: from the latent (the head, exact) or from the decoded image re-encoded."""


@dataclass
class CounterfactualResult:
    """The latent-shift walk of one image.

    Attributes:
        latents: whole latent at each step, ``(T, latent_size)``; row 0 is the image's latent mean.
        images: decoded latents, ``(T, C, *spatial)``; row 0 is the reconstruction.
        probs: probability of ``target_class`` at each step, ``(T,)``.
        flipped: whether the last step is decided (``prob >= threshold``) otherwise than the image itself.
        steps: steps taken (``T - 1``).
        latent_distance: L2 distance from ``mu`` to the last latent.
        latent_distance_sigma: the same distance in units of ``sigma`` (equal without ``sigma``).
        diff_map: last image minus the reconstruction, ``(C, *spatial)``.
        changed_fraction: fraction of pixels where some channel's ``|diff_map|`` exceeds ``change_tol``.
        change_tol: the absolute intensity tolerance used for ``changed_fraction``.
        target_class: class whose probability ``probs`` holds.
        threshold: decision threshold on that probability.
        reencoded_prob: probability the full network gives the last image (encode → classify).
    """

    latents: torch.Tensor
    images: torch.Tensor
    probs: torch.Tensor
    flipped: bool
    steps: int
    latent_distance: float
    latent_distance_sigma: float
    diff_map: torch.Tensor
    changed_fraction: float
    change_tol: float
    target_class: int
    threshold: float
    reencoded_prob: float

    @property
    def reconstruction(self) -> torch.Tensor:
        """Decoding of the original latent mean, ``(C, *spatial)``."""
        return self.images[0]

    @property
    def counterfactual(self) -> torch.Tensor:
        """Decoding of the last latent, ``(C, *spatial)``."""
        return self.images[-1]


def target_log_odds(logits: torch.Tensor, target_class: int) -> torch.Tensor:
    """Log-odds of one class under a softmax: ``logit_t - logsumexp(other logits)``, ``(batch,)``.

    Monotone in the class probability (``p = sigmoid(log_odds)``), with a gradient that does not
    vanish when the probability saturates.

    Args:
        logits: ``(batch, num_classes)`` with ``num_classes >= 2``.
        target_class: the class.

    Returns:
        ``(batch,)`` log-odds.

    Example:
        >>> target_log_odds(torch.tensor([[0.0, 2.0]]), 1)
        tensor([2.])
    """
    others = torch.cat([logits[:, :target_class], logits[:, target_class + 1 :]], dim=1)
    return logits[:, target_class] - torch.logsumexp(others, dim=1)


def _check_image_and_threshold(image: torch.Tensor, threshold: float) -> None:
    """The checks every counterfactual makes: one ``(1, C, *spatial)`` tensor, a threshold in (0, 1)."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.dim() < 3 or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, *spatial), got {tuple(image.shape)}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")


def _decode(model: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.decode(chunk) for chunk in latents.split(_DECODE_CHUNK)]).detach()


def latent_shift_counterfactual(
    model: nn.Module,
    image: torch.Tensor,
    target_class: int = 1,
    threshold: float = 0.5,
    step_size: float = 0.1,
    max_steps: int = 60,
    min_drop: float | None = None,
    sigma: torch.Tensor | None = None,
    change_tol: float = 0.05,
    frames: int | None = None,
    overshoot: float = 0.0,
    readout: str = "latent",
    focus: str = "all",
) -> CounterfactualResult:
    """Shift an image's latent mean until the classifier's decision flips, decoding every step.

    At each step the gradient ``g`` of the target class's log-odds with respect to the latent is
    taken in ``sigma``-whitened coordinates (``u = z / sigma``, gradient ``sigma * g``), normalised to
    unit length, and the latent moves ``step_size`` along it in those units —
    ``z += ± step_size * sigma * (sigma * g) / ||sigma * g||`` — downwards if the current probability is
    at or above ``threshold``, upwards otherwise. The walk stops when the decision has crossed
    ``threshold`` (or, if ``min_drop`` is given, once the probability has moved by ``min_drop``
    towards the other side, which may be before or after crossing), after ``max_steps``, or if the
    gradient vanishes. The model runs in eval mode; its mode is restored afterwards.

    Args:
        model: a :class:`~networks.GlassBoxNet` (``encode``, ``classify``, ``decode``), at least 2 classes.
        image: one image, ``(1, C, *spatial)``.
        target_class: the class whose probability is thresholded.
        threshold: decision threshold on that probability, in (0, 1).
        step_size: step length in units of ``sigma`` (> 0).
        max_steps: most steps (>= 1).
        min_drop: stop once the probability has moved this much (in (0, 1]) instead of at the crossing.
        sigma: per-latent scale of the whole latent, ``(latent_size,)`` and positive (e.g.
            :func:`~evaluation.latent_traversal.aggregate_posterior_std`); default ones.
        change_tol: a pixel counts as changed when ``|diff|`` exceeds ``change_tol`` times the
            reconstruction's intensity range (max − min; 0.05 = 5 % of it).
        frames: walk in this many steps to the target log-odds instead of fixed ``step_size``
            steps: each step covers the distance a linear head still needs divided by the steps
            left, so with the linear heads of both cores the walk lands on the target in ``frames``
            evenly spaced decodings however far it is (``max_steps`` still caps it).
        overshoot: the target lies this many log-odds beyond the threshold (0: stop at the
            crossing; 2: a decision as confident as p = 0.12 against a 0.5 threshold), so that the
            counterfactual is a clear case of the other class, not a borderline one.
        readout: where the walk reads the decision. ``"latent"``: the head on the latent
            (``classify_latent``; exact and linear for the linear heads, but a direction the head
            reads need not be one the decoder draws). ``"image"`` (Cohen et al.'s original): the
            whole network on the *decoded* latent, so the gradient passes through the decoder and
            the walk changes what is drawn; a step that does not move the decision is halved (up
            to 16 times) and the walk stops if none does, so ``probs`` is monotone
            (``bench/bench_generative_core.py`` compares both readouts).
        focus: what the walk may move. ``"all"``: the whole latent. On the spatial core,
            ``"attention"``: only the grid cells, each in proportion to the attention map there
            (scaled to a maximum of 1), so the edit stays where the classifier reads the image and
            the global code (head size, site contrast) is left alone; ``"contribution"``: only the
            cells whose exact share of the margin speaks for the decision. The vector core has no
            cells: any focus moves the whole latent.

    Returns:
        A :class:`CounterfactualResult`.

    Raises:
        TypeError: if ``image`` or ``sigma`` is not a tensor, or ``target_class`` not an int.
        ValueError: if ``image`` is not one image the model accepts, or an argument is out of range.

    Example:
        >>> from networks import GlassBoxNet
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8)
        >>> r = latent_shift_counterfactual(net, torch.rand(1, 1, 32, 32), max_steps=3)
        >>> r.latents.shape[0] == r.steps + 1 <= 4
        True
    """
    _check_image_and_threshold(image, threshold)
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}")
    if min_drop is not None and not 0.0 < min_drop <= 1.0:
        raise ValueError(f"min_drop must be None or in (0, 1], got {min_drop!r}")
    if not change_tol >= 0:
        raise ValueError(f"change_tol must be >= 0, got {change_tol!r}")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise ValueError(f"frames must be None or an int >= 1, got {frames!r}")
    if not overshoot >= 0:
        raise ValueError(f"overshoot must be >= 0, got {overshoot!r}")

    with eval_mode(model):
        enc = model.encode(image)
        mu = enc["latent"].detach() if "latent" in enc else enc["mu"].detach()
        attention = enc.get("latent_attention", enc["attention"]).detach()
        num_classes = model.classify(enc["mu"]).shape[1]
    target_class = _check_target(target_class, num_classes)
    if sigma is None:
        sigma = torch.ones_like(mu[0])
    sigma = _as_vector("sigma", sigma).to(mu)
    if sigma.shape != mu[0].shape:
        raise ValueError(f"sigma must have shape ({mu.shape[1]},) like the latent, got {tuple(sigma.shape)}")
    if not bool(torch.isfinite(sigma).all() and (sigma > 0).all()):
        raise ValueError(f"sigma must be finite and > 0 in every dim, got {sigma.tolist()}")

    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if focus not in FOCUSES:
        raise ValueError(f"focus must be one of {FOCUSES}, got {focus!r}")
    weights = torch.ones_like(mu[0])
    if focus == "attention" and getattr(model, "latent_kind", "vector") == "spatial":
        # move only the grid cells the head reads, in proportion to the attention map there
        grid, global_code = model.split_latent(torch.zeros_like(mu))
        a = attention / attention.flatten(1).amax(dim=1).clamp_min(1e-6).view(
            -1, *[1] * (attention.dim() - 1)
        )
        weights = model.join_latent(grid + a, global_code)[0]
    elif focus == "contribution" and getattr(model, "latent_kind", "vector") == "spatial":
        # move only the grid cells whose exact share of the margin speaks for the decision
        with torch.no_grad(), eval_mode(model):
            shares = model.position_contributions(image, target_class=target_class)
        shares = shares * (
            1.0 if float(model.classify(enc["mu"]).softmax(1)[0, target_class]) >= threshold else -1.0
        )
        shares = shares.clamp_min(0.0)
        shares = shares / shares.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *[1] * (shares.dim() - 1))
        grid, global_code = model.split_latent(torch.zeros_like(mu))
        weights = model.join_latent(grid + shares, global_code)[0]

    def logits_of(z: torch.Tensor) -> torch.Tensor:
        if readout == "image":  # Cohen et al.: the classifier reads the decoded image
            return model.classify(model.encode(model.decode(z))["mu"])
        return model.classify_latent(z, attention)

    z = mu.clone()
    latents, probs = [z[0]], []
    with eval_mode(model):
        p0 = float(torch.softmax(logits_of(z), dim=1)[0, target_class])
        probs.append(p0)
        # the decision explained is the network's on the image itself (with the image readout the
        # walk starts from the reconstruction, which an unfamiliar image may not resemble)
        decided = float(torch.softmax(model.classify(enc["mu"]), dim=1)[0, target_class]) >= threshold
        direction = -1.0 if decided else 1.0
        # target log-odds: ``overshoot`` beyond the threshold, on the other side
        goal = math.log(threshold / (1.0 - threshold)) + direction * overshoot
        p = p0
        for i in range(max_steps):
            moved = direction * (p - p0)
            crossed = (p >= threshold) != decided
            if min_drop is not None and moved >= min_drop:
                break
            if min_drop is None and crossed:
                log_odds = math.log(max(p, 1e-12) / max(1.0 - p, 1e-12))
                if direction * (log_odds - goal) >= -1e-6:
                    break
            with torch.enable_grad():
                zg = z.detach().requires_grad_(True)
                score = target_log_odds(logits_of(zg), target_class).sum()
                (grad,) = torch.autograd.grad(score, zg)
            whitened = grad[0] * sigma * weights
            norm = whitened.norm()
            if not bool(torch.isfinite(norm)) or float(norm) == 0.0:
                break  # nothing to follow: the head does not depend on the latent here
            step = step_size
            if frames is not None:
                left = max(1, frames - i)
                step = max(abs(goal - float(score)) / float(norm) / left, 1e-6)
            # backtracking: a step must move the probability the way the walk goes (always so for
            # the linear readout; the image readout passes through the decoder and the encoder)
            for _ in range(_BACKTRACKS):
                candidate = z + direction * step * sigma * whitened / norm
                logits_new = logits_of(candidate)
                p_new = float(torch.softmax(logits_new, dim=1)[0, target_class])
                moved_by = float(target_log_odds(logits_new, target_class).sum() - score)
                if direction * moved_by > 0 or readout == "latent":
                    break
                step = step / 2
            else:
                break  # no step along the gradient moves the decision: stop the walk
            z, p = candidate, p_new
            latents.append(z[0])
            probs.append(p)
        latent_table = torch.stack(latents)
        images = _decode(model, latent_table)
        reencoded = model.classify(model.encode(images[-1:])["mu"])
        reencoded_prob = float(torch.softmax(reencoded, dim=1)[0, target_class])

    recon = images[0]
    diff = images[-1] - recon
    tol = change_tol * float(recon.max() - recon.min())
    shift = latent_table[-1] - latent_table[0]
    return CounterfactualResult(
        latents=latent_table,
        images=images,
        probs=torch.tensor(probs),
        flipped=(probs[-1] >= threshold) != decided,
        steps=len(latents) - 1,
        latent_distance=float(shift.norm()),
        latent_distance_sigma=float((shift / sigma).norm()),
        diff_map=diff,
        changed_fraction=float((diff.abs() > tol).any(dim=0).float().mean()),
        change_tol=tol,
        target_class=target_class,
        threshold=float(threshold),
        reencoded_prob=reencoded_prob,
    )
