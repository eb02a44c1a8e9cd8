"""Figures of explanations: latent traversals, latent-shift and infill counterfactuals, saliency overlays.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` and written as PNG with the Agg
renderer, without pyplot, so the process's matplotlib backend is never switched and nothing is
left open. Arrays are channel-first with the first channel shown; a ``(x, y)`` slice is drawn with
``x`` across and ``y`` down (as :mod:`evaluation.cohort_figures`). A 3D volume is shown as its
three orthogonal mid-slices side by side (:func:`mid_slices`).

Example:
    >>> import tempfile
    >>> from networks import GlassBoxNet
    >>> from evaluation.latent_traversal import latent_traversal
    >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
    >>> result = latent_traversal(net, torch.zeros(4), torch.ones(4), dims=[0, 1], steps=5)
    >>> traversal_figure(result, tempfile.mkdtemp() + "/traversal.png").suffix
    '.png'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from evaluation.counterfactuals import CounterfactualResult
from evaluation.infill_counterfactuals import InfillCounterfactual
from evaluation.latent_traversal import TraversalResult

__all__ = ["counterfactual_figure", "infill_figure", "mid_slices", "overlay_figure", "traversal_figure"]

_PANEL = 1.5  # inches per panel (height)


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float64)


def mid_slices(volume: torch.Tensor | np.ndarray) -> list[np.ndarray]:
    """The three orthogonal mid-slices of a 3D volume (a 2D array is returned as the only slice).

    Args:
        volume: ``(x, y, z)`` or ``(x, y)`` array or tensor.

    Returns:
        ``[volume[x // 2], volume[:, y // 2], volume[:, :, z // 2]]`` — the ``(y, z)``, ``(x, z)`` and
        ``(x, y)`` planes — or ``[volume]`` for 2D.

    Raises:
        ValueError: if ``volume`` is not 2D or 3D.

    Example:
        >>> [s.shape for s in mid_slices(np.zeros((4, 5, 6)))]
        [(5, 6), (4, 6), (4, 5)]
    """
    array = _numpy(volume)
    if array.ndim == 2:
        return [array]
    if array.ndim != 3:
        raise ValueError(f"volume must be 2D (x, y) or 3D (x, y, z), got shape {array.shape}")
    x, y, z = (s // 2 for s in array.shape)
    return [array[x], array[:, y], array[:, :, z]]


def _view(spatial: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """A 2D display array: the slice transposed, or a 3D volume's mid-slices side by side."""
    slices = [s.T for s in mid_slices(spatial)]
    if len(slices) == 1:
        return slices[0]
    height = max(s.shape[0] for s in slices)
    parts = []
    for s in slices:
        padded = np.full((height, s.shape[1] + 1), fill)
        padded[: s.shape[0], : s.shape[1]] = s
        parts.append(padded)
    return np.concatenate(parts, axis=1)[:, :-1]


def _first_channel(image: torch.Tensor | np.ndarray, spatial_dims: int, name: str) -> np.ndarray:
    """``(*spatial)`` of the first channel of ``(1, C, *spatial)``, ``(C, *spatial)`` or ``(*spatial)``."""
    array = _numpy(image)
    if not spatial_dims <= array.ndim <= spatial_dims + 2:
        raise ValueError(
            f"{name} must be (1, C, *spatial), (C, *spatial) or (*spatial) with {spatial_dims} spatial dims, "
            f"got shape {array.shape}"
        )
    while array.ndim > spatial_dims:
        array = array[0]
    return array


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig: Figure, path: str | PathLike) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, format="png")
    return out


def _panel_size(view: np.ndarray, scale: float = 1.0) -> tuple[float, float]:
    """Panel ``(width, height)`` in inches: ``_PANEL`` high for square views, wide views a bit flatter."""
    aspect = view.shape[1] / view.shape[0]
    height = scale * _PANEL / max(1.0, aspect) ** 0.5
    return height * aspect, height


def _symmetric_limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1e-6


def traversal_figure(
    result: TraversalResult,
    path: str | PathLike,
    title: str | None = None,
    ranking: Sequence[Mapping] | None = None,
) -> Path:
    """Grid of a latent traversal: per latent, a row of decoded images and a row of differences.

    Images share one grey scale; differences (``image − decoding of mu``) share one diverging scale
    symmetric about 0 (blue darker, red brighter). Columns are the offsets in ``sigma`` with the
    target probability at each step.

    Args:
        result: from :func:`~evaluation.latent_traversal.latent_traversal`.
        path: PNG to write (parent folders are created).
        title: figure title.
        ranking: from :func:`~evaluation.latent_traversal.rank_dimensions`; adds each latent's
            contribution to its row label, e.g. ``"z3 (contrib +1.20)"``.

    Returns:
        The written path.

    Raises:
        TypeError: if ``result`` is not a ``TraversalResult``.

    Example:
        >>> import tempfile
        >>> from networks import GlassBoxNet
        >>> from evaluation.latent_traversal import latent_traversal, rank_dimensions
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
        >>> mu = torch.tensor([0.0, 1.0, 0.0, -1.0])
        >>> result = latent_traversal(net, mu, torch.ones(4), dims=[1, 3], steps=5)
        >>> traversal_figure(result, tempfile.mkdtemp() + "/t.png", ranking=rank_dimensions(net, mu)).name
        't.png'
    """
    if not isinstance(result, TraversalResult):
        raise TypeError(f"result must be a TraversalResult, got {type(result).__name__}")
    spatial_dims = result.images.dim() - 3
    contrib = {int(r["dim"]): float(r["contribution"]) for r in ranking or []}
    k, s = result.values.shape
    images = [
        [_view(_first_channel(result.images[i, j], spatial_dims, "images")) for j in range(s)]
        for i in range(k)
    ]
    diffs = [
        [_view(_first_channel(result.diffs[i, j], spatial_dims, "diffs")) for j in range(s)] for i in range(k)
    ]
    all_images = np.stack([v for row in images for v in row])
    vmin, vmax = np.nanmin(all_images), np.nanmax(all_images)
    limit = _symmetric_limit(np.stack([v for row in diffs for v in row]))
    width, height = _panel_size(all_images[0])
    fig = Figure(figsize=(1.2 + width * s, 0.6 + (height + 0.2) * 2 * k), layout="constrained")
    axes = fig.subplots(2 * k, s, squeeze=False)
    shown = None
    for i, dim in enumerate(result.dims):
        label = f"z{dim}" + (f" (contrib {contrib[dim]:+.2f})" if dim in contrib else "")
        for j in range(s):
            top, bottom = axes[2 * i, j], axes[2 * i + 1, j]
            top.imshow(images[i][j], cmap="gray", vmin=vmin, vmax=vmax)
            shown = bottom.imshow(diffs[i][j], cmap="RdBu_r", vmin=-limit, vmax=limit)
            top.set_title(f"{float(result.values[i, j]):+.1f}σ p={float(result.probs[i, j]):.2f}", fontsize=7)
            _blank(top)
            _blank(bottom)
        axes[2 * i, 0].set_ylabel(label, fontsize=8)
        axes[2 * i + 1, 0].set_ylabel("difference", fontsize=7)
    fig.colorbar(shown, ax=axes[1::2, :].ravel().tolist(), shrink=0.6, label="Δ intensity")
    fig.suptitle(
        title or f"latent traversal (p = P(class {result.target_class}), at mu {result.base_prob:.2f})"
    )
    return _save(fig, path)


def counterfactual_figure(
    image: torch.Tensor | np.ndarray,
    result: CounterfactualResult,
    path: str | PathLike,
    n_strip: int = 6,
    title: str | None = None,
) -> Path:
    """Input | reconstruction | counterfactual | difference, above a strip of intermediate steps.

    Args:
        image: the explained image, ``(1, C, *spatial)`` or ``(C, *spatial)``.
        result: from :func:`~evaluation.counterfactuals.latent_shift_counterfactual`.
        path: PNG to write (parent folders are created).
        n_strip: steps shown in the strip (>= 2), evenly spaced from first to last.
        title: figure title (default: flip, steps, latent distance and changed pixels).

    Returns:
        The written path.

    Raises:
        TypeError: if ``result`` is not a ``CounterfactualResult``.
        ValueError: if ``image`` does not match the result's spatial shape, or ``n_strip`` < 2.

    Example:
        >>> import tempfile
        >>> from networks import GlassBoxNet
        >>> from evaluation.counterfactuals import latent_shift_counterfactual
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
        >>> x = torch.rand(1, 1, 32, 32)
        >>> counterfactual_figure(x, latent_shift_counterfactual(net, x), tempfile.mkdtemp() + "/c.png").name
        'c.png'
    """
    if not isinstance(result, CounterfactualResult):
        raise TypeError(f"result must be a CounterfactualResult, got {type(result).__name__}")
    if isinstance(n_strip, bool) or not isinstance(n_strip, int) or n_strip < 2:
        raise ValueError(f"n_strip must be an int >= 2, got {n_strip!r}")
    spatial_dims = result.diff_map.dim() - 1
    original = _first_channel(image, spatial_dims, "image")
    if original.shape != tuple(result.diff_map.shape[1:]):
        raise ValueError(
            f"image must match the counterfactual's spatial shape {tuple(result.diff_map.shape[1:])}, "
            f"got {original.shape}"
        )
    probs = result.probs.tolist()
    steps = sorted({int(round(v)) for v in np.linspace(0, len(probs) - 1, min(n_strip, len(probs)))})
    views = {
        "input": _view(original),
        "recon": _view(_first_channel(result.reconstruction, spatial_dims, "images")),
        "cf": _view(_first_channel(result.counterfactual, spatial_dims, "images")),
    }
    strip = [_view(_first_channel(result.images[t], spatial_dims, "images")) for t in steps]
    stacked = np.stack(list(views.values()) + strip)
    vmin, vmax = np.nanmin(stacked), np.nanmax(stacked)
    diff = _view(_first_channel(result.diff_map, spatial_dims, "diff_map"))
    limit = _symmetric_limit(diff)
    cols = max(5, len(steps))  # column 4 of the top row stays free for the colour bar
    width, height = _panel_size(diff, 1.2)
    fig = Figure(figsize=(0.8 + width * cols, 1.2 + height * 2), layout="constrained")
    axes = fig.subplots(2, cols, squeeze=False)
    t = result.target_class
    panels = [
        ("input", f"input\nP(class {t}) = {probs[0]:.2f}"),
        ("recon", "reconstruction"),
        ("cf", f"counterfactual\nP(class {t}) = {probs[-1]:.2f}"),
    ]
    for ax, (key, label) in zip(axes[0], panels, strict=False):
        ax.imshow(views[key], cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_title(label, fontsize=8)
    shown = axes[0, 3].imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[0, 3].set_title("counterfactual − recon", fontsize=8)
    # an inset colour bar kept out of the layout (it would widen column 3 of the step strip
    # too), drawn over the free top-row slot to the right of the difference map
    cax = axes[0, 3].inset_axes((1.04, 0.1, 0.06, 0.8))
    cax.set_in_layout(False)
    fig.colorbar(shown, cax=cax)
    for ax, step, view in zip(axes[1], steps, strip, strict=False):
        ax.imshow(view, cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_title(f"step {step}\np = {probs[step]:.2f}", fontsize=7)
    for ax in axes.ravel():
        _blank(ax)
        if not ax.images:
            ax.set_axis_off()
    fig.suptitle(
        title
        or (
            f"latent shift: {'flipped' if result.flipped else 'not flipped'} after {result.steps} steps, "
            f"|Δz| = {result.latent_distance_sigma:.2f}σ, {result.changed_fraction:.1%} of pixels changed"
        ),
        fontsize=9,
    )
    return _save(fig, path)


def infill_figure(
    result: InfillCounterfactual,
    path: str | PathLike,
    mask: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Input | reconstruction | counterfactual | difference of an infill counterfactual.

    The infilled region is outlined in yellow on the input and the counterfactual; the true
    lesion mask, when given, in black on the difference map.

    Args:
        result: from :func:`~evaluation.infill_counterfactuals.infill_counterfactual`.
        path: PNG to write (parent folders are created).
        mask: ground-truth region ``(*spatial)`` (or with leading channel dims), pixels > 0 inside.
        title: figure title (default: flip, probabilities and the region's size).

    Returns:
        The written path.

    Raises:
        TypeError: if ``result`` is not an ``InfillCounterfactual``.
        ValueError: if ``mask`` does not have the image's spatial shape.

    Example:
        >>> import tempfile
        >>> from networks import GlassBoxNet
        >>> from evaluation.infill_counterfactuals import infill_counterfactual
        >>> net = GlassBoxNet(spatial_dims=2, in_channels=1, num_classes=2, img_size=(32, 32), latent_dim=4)
        >>> infill_figure(infill_counterfactual(net, torch.rand(1, 1, 32, 32)), tempfile.mkdtemp() + "/i.png").name
        'i.png'
    """
    if not isinstance(result, InfillCounterfactual):
        raise TypeError(f"result must be an InfillCounterfactual, got {type(result).__name__}")
    spatial_dims = result.diff_map.dim() - 1
    views = {
        key: _view(_first_channel(value, spatial_dims, key))
        for key, value in (
            ("input", result.image),
            ("reconstruction", result.reconstruction),
            ("counterfactual", result.counterfactual),
        )
    }
    region = _view(result.region.numpy().astype(float), fill=0.0)
    outline = None
    if mask is not None:
        truth = _first_channel(mask, spatial_dims, "mask")
        if truth.shape != tuple(result.region.shape):
            raise ValueError(
                f"mask must have the image's spatial shape {tuple(result.region.shape)}, got {truth.shape}"
            )
        outline = _view((truth > 0).astype(float), fill=0.0)
    stacked = np.stack(list(views.values()))
    vmin, vmax = np.nanmin(stacked), np.nanmax(stacked)
    diff = _view(_first_channel(result.diff_map, spatial_dims, "diff_map"))
    limit = _symmetric_limit(diff)
    width, height = _panel_size(diff, 1.3)
    fig = Figure(figsize=(1.0 + width * 4, 0.9 + height), layout="constrained")
    axes = fig.subplots(1, 4, squeeze=False)[0]
    t = result.target_class
    labels = {
        "input": f"input\nP(class {t}) = {result.prob:.2f}",
        "reconstruction": "reconstruction",
        "counterfactual": f"counterfactual\nP(class {t}) = {result.final_prob:.2f}",
    }
    for ax, (key, view) in zip(axes, views.items(), strict=False):
        ax.imshow(view, cmap="gray", vmin=vmin, vmax=vmax)
        ax.set_title(labels[key], fontsize=8)
        if key != "reconstruction" and region.any():
            ax.contour(region, levels=[0.5], colors="y", linewidths=0.8)
    shown = axes[3].imshow(diff, cmap="RdBu_r", vmin=-limit, vmax=limit)
    axes[3].set_title("counterfactual − input", fontsize=8)
    if outline is not None and outline.any():
        axes[3].contour(outline, levels=[0.5], colors="k", linewidths=0.8)
    fig.colorbar(shown, ax=axes[3], shrink=0.8)
    for ax in axes:
        _blank(ax)
    fig.suptitle(
        title
        or (
            f"infill: {'flipped' if result.flipped else 'not flipped'}, region {result.region_fraction:.1%} "
            f"of the image ({result.windows} window{'s' if result.windows != 1 else ''}), "
            f"{result.changed_fraction:.1%} of pixels changed"
        ),
        fontsize=9,
    )
    return _save(fig, path)


def overlay_figure(
    image: torch.Tensor | np.ndarray,
    maps: Mapping[str, torch.Tensor | np.ndarray],
    path: str | PathLike,
    mask: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """The input, then the input with each saliency map overlaid (jet, half transparent).

    Each map is rescaled to [0, 1] for display (the scales of different methods are not
    comparable); the true mask, when given, is outlined in white on every panel.

    Args:
        image: ``(1, C, *spatial)``, ``(C, *spatial)`` or ``(*spatial)``.
        maps: ``{method: (*spatial) map}``, e.g. from :func:`~evaluation.saliency_maps.compute_maps`.
        path: PNG to write (parent folders are created).
        mask: ground-truth region ``(*spatial)`` (or with leading channel dims), pixels > 0 inside.
        title: figure title.

    Returns:
        The written path.

    Raises:
        ValueError: if ``maps`` is empty, or a map or the mask does not have the image's spatial shape
            (naming both shapes).

    Example:
        >>> import tempfile
        >>> overlay_figure(np.random.rand(16, 16), {"a": np.random.rand(16, 16)}, tempfile.mkdtemp() + "/o.png").name
        'o.png'
    """
    if not maps:
        raise ValueError("maps must hold at least one saliency map, got none")
    arrays = {name: _numpy(m) for name, m in maps.items()}
    spatial_dims = next(iter(arrays.values())).ndim
    base = _first_channel(image, spatial_dims, "image")
    for name, m in arrays.items():
        if m.shape != base.shape:
            raise ValueError(
                f"maps[{name!r}] must have the image's spatial shape {base.shape}, got {m.shape}"
            )
    outline = None
    if mask is not None:
        region = _first_channel(mask, spatial_dims, "mask")
        if region.shape != base.shape:
            raise ValueError(f"mask must have the image's spatial shape {base.shape}, got {region.shape}")
        outline = _view((region > 0).astype(float), fill=0.0)
    view = _view(base)
    cols = 1 + len(arrays)
    width, height = _panel_size(view, 1.3)
    fig = Figure(figsize=(0.4 + width * cols, 0.6 + height), layout="constrained")
    axes = fig.subplots(1, cols, squeeze=False)[0]
    axes[0].imshow(view, cmap="gray")
    axes[0].set_title("input", fontsize=8)
    for ax, (name, m) in zip(axes[1:], arrays.items(), strict=True):
        low, high = np.nanmin(m), np.nanmax(m)
        scaled = (m - low) / (high - low) if high > low else np.zeros_like(m)
        ax.imshow(view, cmap="gray")
        ax.imshow(_view(scaled), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        ax.set_title(name, fontsize=8)
    for ax in axes:
        _blank(ax)
        if outline is not None and outline.any():
            ax.contour(outline, levels=[0.5], colors="w", linewidths=0.8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)
