"""Counterfactual images by infilling regions with the autoencoder's own reconstruction.

The question a counterfactual answers is "what would have to be different in this image for
the decision to change?". :mod:`evaluation.counterfactuals` answers it in the latent space; its
difference map can only show what the decoder can draw, and the vector core's decoder
(:class:`~networks.GlassBoxNet`) does not draw small findings. This module answers it in the image: replace a region of the image by the
same region of the network's reconstruction — an image of the same anatomy without what the
latent could not hold — and look for the smallest region whose replacement changes the decision
(the counterfactual infill of Chang et al., "Explaining Image Classifiers by Counterfactual
Generation", ICLR 2019, with the network's decoder as the generative infill).

The region is searched greedily rather than by optimising a mask as in that paper: every
window of ``window`` pixels (at ``stride``) is infilled alone and ranked by how far it moves the
probability towards the other side of the threshold; the union of the top windows grows until
the decision changes; a second pass with ``fine_window`` windows inside that union shrinks the
region when a smaller one also changes the decision. It needs only forward passes (batched),
is deterministic, and works in 2D and 3D. The difference map is ``counterfactual − image``:
non-zero only inside the region, it shows what the change consists of.

Example:
    >>> from networks import GlassBoxNet
    >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=8)
    >>> result = infill_counterfactual(net, torch.rand(1, 1, 32, 32), window=8, stride=8)
    >>> result.counterfactual.shape, result.region.shape
    (torch.Size([1, 32, 32]), torch.Size([32, 32]))
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.networks.utils import eval_mode
from torch import nn

from evaluation.counterfactuals import _check_image_and_threshold
from evaluation.latent_traversal import _check_target

__all__ = ["InfillCounterfactual", "infill_counterfactual", "masks_of", "window_corners", "window_masks"]

_BATCH = 64  # most images per forward pass
_BATCH_PIXELS = 2**20  # and most pixels (a 64³ volume: 4 per pass)


def _batch_size(spatial_size: Sequence[int]) -> int:
    """Images per forward pass: ``_BATCH``, fewer for large (3D) images."""
    return max(1, min(_BATCH, _BATCH_PIXELS // max(1, math.prod(int(s) for s in spatial_size))))


@dataclass
class InfillCounterfactual:
    """The infill counterfactual of one image.

    Attributes:
        image: the input, ``(C, *spatial)``.
        reconstruction: the network's reconstruction of it, ``(C, *spatial)``.
        counterfactual: the image with ``region`` replaced by the reconstruction, ``(C, *spatial)``.
        region: the replaced pixels, ``(*spatial)`` bool.
        diff_map: ``counterfactual − image``, ``(C, *spatial)``.
        prob: probability of ``target_class`` for the image.
        final_prob: the same for the counterfactual.
        flipped: whether the decision (``prob >= threshold``) differs for the counterfactual.
        windows: windows in the region.
        region_fraction: share of the pixels in the region.
        changed_fraction: share of the pixels where some channel's ``|diff_map|`` exceeds ``change_tol``.
        change_tol: the absolute intensity tolerance used for ``changed_fraction``.
        target_class: class whose probability is thresholded.
        threshold: the decision threshold.
    """

    image: torch.Tensor
    reconstruction: torch.Tensor
    counterfactual: torch.Tensor
    region: torch.Tensor
    diff_map: torch.Tensor
    prob: float
    final_prob: float
    flipped: bool
    windows: int
    region_fraction: float
    changed_fraction: float
    change_tol: float
    target_class: int
    threshold: float


def _starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride``, plus one flush with the far edge."""
    last = size - window
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


def window_corners(
    spatial_size: Sequence[int], window: int, stride: int, within: torch.Tensor | None = None
) -> tuple[list[tuple[int, ...]], list[int]]:
    """Corners of the windows that tile an image (overlapping when ``stride < window``).

    Args:
        spatial_size: the image's spatial size (2 or 3 entries).
        window: edge of a window in pixels (clipped to each axis's size).
        stride: step between window starts; the last window of each axis touches the far edge.
        within: optional ``(*spatial)`` bool mask: keep only windows lying entirely inside it.

    Returns:
        ``(corners, edges)``: each window's first pixel, and the window's edge along each axis.

    Raises:
        ValueError: ``window`` or ``stride`` below 1.

    Example:
        >>> window_corners((8, 8), 4, 4)
        ([(0, 0), (0, 4), (4, 0), (4, 4)], [4, 4])
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window!r}, stride={stride!r}")
    sizes = [int(s) for s in spatial_size]
    edges = [min(window, s) for s in sizes]
    corners = [
        corner
        for corner in itertools.product(*(_starts(s, e, stride) for s, e in zip(sizes, edges, strict=True)))
        if within is None or bool(within[_window_slices(corner, edges)].all())
    ]
    return corners, edges


def _window_slices(corner: Sequence[int], edges: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(c, c + e) for c, e in zip(corner, edges, strict=True))


def masks_of(
    corners: Sequence[Sequence[int]], edges: Sequence[int], spatial_size: Sequence[int]
) -> torch.Tensor:
    """``(len(corners), 1, *spatial)`` float masks of the given windows (see :func:`window_corners`).

    Example:
        >>> masks_of([(0, 0)], [2, 2], (4, 4)).sum().item()
        4.0
    """
    masks = torch.zeros(len(corners), 1, *[int(s) for s in spatial_size])
    for i, corner in enumerate(corners):
        masks[(i, 0, *_window_slices(corner, edges))] = 1.0
    return masks


def window_masks(
    spatial_size: Sequence[int], window: int, stride: int, within: torch.Tensor | None = None
) -> torch.Tensor:
    """Binary masks of the windows of :func:`window_corners`, all at once.

    This holds one image-sized mask per window; :func:`infill_counterfactual` builds them a batch
    at a time instead (a 64³ volume has 3,375 windows of 8 voxels at stride 4: 3.5 GB of masks).

    Args:
        spatial_size: the image's spatial size (2 or 3 entries).
        window: edge of a window in pixels (clipped to each axis's size).
        stride: step between window starts.
        within: optional ``(*spatial)`` bool mask: keep only windows lying entirely inside it.

    Returns:
        ``(N, 1, *spatial)`` float masks (``N`` may be 0 with ``within``).

    Raises:
        ValueError: ``window`` or ``stride`` below 1.

    Example:
        >>> window_masks((8, 8), 4, 4).shape
        torch.Size([4, 1, 8, 8])
    """
    corners, edges = window_corners(spatial_size, window, stride, within)
    return masks_of(corners, edges, spatial_size)


def _probs(model: nn.Module, batch: torch.Tensor, target_class: int, batch_size: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [
                torch.softmax(model(chunk)["logits"], dim=1)[:, target_class]
                for chunk in batch.split(batch_size)
            ]
        )


def _infill(image: torch.Tensor, recon: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """One image per mask: ``image`` with the mask's region taken from ``recon``."""
    return image * (1 - masks) + recon * masks


def _single_effects(
    model: nn.Module,
    image: torch.Tensor,
    recon: torch.Tensor,
    windows: tuple[list[tuple[int, ...]], list[int]],
    target_class: int,
) -> torch.Tensor:
    """Probability of ``target_class`` with each window infilled alone, ``(len(corners),)``.

    Masks are built a forward pass's worth at a time, so memory does not grow with the window
    count (``bench/bench_infill.py`` compares this with building them all at once).
    """
    corners, edges = windows
    spatial = image.shape[2:]
    step = _batch_size(spatial)
    return torch.cat(
        [
            _probs(
                model,
                _infill(image, recon, masks_of(corners[i : i + step], edges, spatial)),
                target_class,
                step,
            )
            for i in range(0, len(corners), step)
        ]
    )


def _grow(
    model: nn.Module,
    image: torch.Tensor,
    recon: torch.Tensor,
    windows: tuple[list[tuple[int, ...]], list[int]],
    p0: float,
    target_class: int,
    threshold: float,
    max_windows: int,
) -> tuple[torch.Tensor, int, bool]:
    """Rank the windows by their own effect, then grow the union of the best until the decision changes.

    Returns the region ``(1, 1, *spatial)``, its window count and whether it changes the decision;
    without a change, the union of all ``max_windows`` best windows.
    """
    corners, edges = windows
    toward = -1.0 if p0 >= threshold else 1.0  # the probability must move to the other side
    single = _single_effects(model, image, recon, windows, target_class)
    order = torch.argsort(toward * (single - p0), descending=True)[:max_windows]
    best = masks_of([corners[int(i)] for i in order], edges, image.shape[2:])
    unions = torch.cummax(best, dim=0).values  # union of the first k windows, k = 1, 2, ...
    grown = _probs(model, _infill(image, recon, unions), target_class, _batch_size(image.shape[2:]))
    crossed = torch.nonzero((grown >= threshold) != (p0 >= threshold)).flatten()
    k = int(crossed[0]) if len(crossed) else len(unions) - 1
    return unions[k : k + 1], k + 1, bool(len(crossed))


def infill_counterfactual(
    model: nn.Module,
    image: torch.Tensor,
    target_class: int = 1,
    threshold: float = 0.5,
    window: int = 8,
    stride: int = 4,
    fine_window: int | None = 4,
    fine_stride: int = 2,
    max_windows: int = 32,
    change_tol: float = 0.05,
) -> InfillCounterfactual:
    """The smallest region found whose infill with the network's reconstruction changes the decision.

    Args:
        model: a network whose forward returns ``recon`` (same shape as the input) and ``logits``
            (a :class:`~networks.GlassBoxNet`); run in eval mode, its mode restored afterwards.
        image: one image, ``(1, C, *spatial)``.
        target_class: the class whose probability is thresholded.
        threshold: decision threshold on that probability, in (0, 1).
        window: edge of the coarse windows in pixels.
        stride: step of the coarse windows.
        fine_window: edge of the windows of the shrinking pass (``None``: no second pass).
        fine_stride: their step.
        max_windows: most windows in a region.
        change_tol: a pixel counts as changed when ``|diff|`` exceeds ``change_tol`` times the
            image's intensity range (max − min).

    Returns:
        An :class:`InfillCounterfactual`; ``flipped`` is False when even the ``max_windows``
        most effective windows together do not change the decision (then the region is theirs).

    Raises:
        TypeError: ``image`` is not a tensor, or ``target_class`` not an int.
        ValueError: ``image`` is not one image, an argument is out of range, or the model's
            reconstruction does not have the image's shape.
    """
    _check_image_and_threshold(image, threshold)
    for name, value in (
        ("window", window),
        ("stride", stride),
        ("fine_stride", fine_stride),
        ("max_windows", max_windows),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if fine_window is not None and (
        isinstance(fine_window, bool) or not isinstance(fine_window, int) or fine_window < 1
    ):
        raise ValueError(f"fine_window must be None or an int >= 1, got {fine_window!r}")
    if not change_tol >= 0:
        raise ValueError(f"change_tol must be >= 0, got {change_tol!r}")

    image = image.detach().float()
    spatial = image.shape[2:]
    with eval_mode(model):
        with torch.no_grad():
            out = model(image)
        recon = out["recon"].detach().float()
        if recon.shape != image.shape:
            raise ValueError(
                f"the model's reconstruction must have the image's shape {tuple(image.shape)}, got {tuple(recon.shape)}"
            )
        target_class = _check_target(target_class, out["logits"].shape[1])
        p0 = float(torch.softmax(out["logits"], dim=1)[0, target_class])
        search = (p0, target_class, float(threshold), max_windows)
        region, windows, flipped = _grow(
            model, image, recon, window_corners(spatial, window, stride), *search
        )
        if flipped and fine_window is not None and fine_window < window:
            fine = window_corners(spatial, fine_window, fine_stride, within=region[0, 0].bool())
            if len(fine[0]):
                smaller, count, fine_flipped = _grow(model, image, recon, fine, *search)
                if fine_flipped and float(smaller.sum()) < float(region.sum()):
                    region, windows = smaller, count
        counterfactual = _infill(image, recon, region)
        final_prob = float(_probs(model, counterfactual, target_class, 1)[0])

    diff = (counterfactual - image)[0]
    tol = change_tol * float(image.max() - image.min())
    return InfillCounterfactual(
        image=image[0],
        reconstruction=recon[0],
        counterfactual=counterfactual[0],
        region=region[0, 0].bool(),
        diff_map=diff,
        prob=p0,
        final_prob=final_prob,
        flipped=(final_prob >= threshold) != (p0 >= threshold),
        windows=windows,
        region_fraction=float(region.mean()),
        changed_fraction=float((diff.abs() > tol).any(dim=0).float().mean()),
        change_tol=tol,
        target_class=target_class,
        threshold=float(threshold),
    )
