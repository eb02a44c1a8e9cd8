"""One PNG panel per synthesised case: source | synthetic | target | enhancement maps | error.

The enhancement maps (``synthetic − source`` predicted, ``target − source`` true) share one
symmetric colour scale, so a missed or invented enhancement is seen at a glance; the images share
one grey scale. A 3D volume is shown by the axial slice (last axis) through the lesion's centre
of mass, or the middle slice without a lesion. Written with matplotlib (``Agg``).

Example:
    >>> import numpy as np
    >>> src = np.zeros((16, 16)); tgt = src.copy(); tgt[4:8, 4:8] = 1
    >>> synthesis_panel("case.png", src, tgt * 0.8, tgt)  # doctest: +SKIP
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = ["synthesis_panel", "display_slice"]


def _plain(array: Any) -> np.ndarray:
    arr = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    arr = np.asarray(arr, dtype=np.float64)
    return arr[0] if arr.ndim in (3, 4) and arr.shape[0] == 1 else arr


def display_slice(array: Any, mask: Any = None) -> tuple[np.ndarray, int | None]:
    """The 2D image shown for ``array``: itself (2D) or one slice along the last axis (3D).

    Args:
        array: ``(*spatial)`` or ``(1, *spatial)``.
        mask: optional lesion mask of the same shape; a 3D slice goes through its centre of mass.

    Returns:
        ``(image, slice index or None for 2D)``.

    Raises:
        ValueError: not a 2D/3D single-channel image.
    """
    arr = _plain(array)
    if arr.ndim == 2:
        return arr, None
    if arr.ndim != 3:
        raise ValueError(f"expected a 2D or 3D image, got shape {arr.shape}")
    index = arr.shape[-1] // 2
    if mask is not None:
        m = _plain(mask) != 0
        if m.shape == arr.shape and m.any():
            index = int(round(ndimage.center_of_mass(m)[-1]))
    return arr[..., index], index


def synthesis_panel(
    path: str | PathLike,
    source: Any,
    synthetic: Any,
    target: Any = None,
    mask: Any = None,
    title: str | None = None,
) -> Path:
    """Write the panel of one case as a PNG.

    Columns: source, synthetic, (target), predicted enhancement (synthetic − source), (true
    enhancement = target − source, |synthetic − target|); the bracketed ones only with a target.
    The lesion outline is drawn on every column when ``mask`` is given.

    Args:
        path: output PNG (folders created).
        source: source image.
        synthetic: synthetic image.
        target: real target or ``None``.
        mask: lesion mask or ``None``.
        title: figure title.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ValueError: images of different shapes, or not 2D/3D.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = {_plain(a).shape for a in (source, synthetic, target, mask) if a is not None}
    if len(shapes) != 1:
        raise ValueError(f"images must have the same shape, got {sorted(shapes)}")
    src, index = display_slice(source, mask)

    def shown(a: Any) -> np.ndarray:
        arr = _plain(a)
        return arr if index is None else arr[..., index]

    syn = shown(synthetic)
    grey = [("source", src), ("synthetic", syn)]
    maps = [("predicted enhancement", syn - src)]
    if target is not None:
        tgt = shown(target)
        grey.insert(2, ("target", tgt))
        maps.append(("true enhancement", tgt - src))
    lo = min(float(a.min()) for _, a in grey)
    hi = max(float(a.max()) for _, a in grey)
    hi = hi if hi > lo else lo + 1.0
    span = max(float(np.abs(a).max()) for _, a in maps) or 1.0
    columns: list[tuple[str, np.ndarray, dict[str, Any]]] = [
        (name, a, {"cmap": "gray", "vmin": lo, "vmax": hi}) for name, a in grey
    ]
    columns += [(name, a, {"cmap": "RdBu_r", "vmin": -span, "vmax": span}) for name, a in maps]
    if target is not None:
        err = np.abs(syn - shown(target))
        columns.append(("|synthetic - target|", err, {"cmap": "magma", "vmin": 0.0, "vmax": span}))
    outline = None if mask is None else shown(mask) != 0
    fig, axes = plt.subplots(1, len(columns), figsize=(2.3 * len(columns), 2.6), squeeze=False)
    for ax, (name, arr, style) in zip(axes[0], columns, strict=True):
        ax.imshow(arr.T, origin="lower", **style)  # MONAI layout (x, y): x across, y up
        if outline is not None and outline.any():
            ax.contour(outline.T.astype(float), levels=[0.5], colors="yellow", linewidths=0.6)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title + ("" if index is None else f" (slice {index})"), fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
