"""Overlay figures of the segmentation workflow: an image with its true and predicted lesion outlines.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((16, 16)); mask[4:8, 4:8] = 1
    >>> overlay_figure("overlay.png", np.random.rand(16, 16), mask, mask, "case")  # doctest: +SKIP
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import torch

__all__ = ["display_slice", "overlay_figure"]


def _array(x: np.ndarray | torch.Tensor) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return array.astype(np.float32)


def display_slice(truth: np.ndarray | torch.Tensor) -> int:
    """The index along the last axis of a 3D mask with the most lesion voxels (the middle when none).

    Example:
        >>> m = np.zeros((4, 4, 5)); m[1, 1, 3] = 1
        >>> display_slice(m)
        3
    """
    array = _array(truth)
    per_slice = (array > 0).reshape(-1, array.shape[-1]).sum(0)
    return int(per_slice.argmax()) if per_slice.any() else array.shape[-1] // 2


def overlay_figure(
    path: str | PathLike,
    image: np.ndarray | torch.Tensor,
    truth: np.ndarray | torch.Tensor | None,
    pred: np.ndarray | torch.Tensor,
    title: str,
) -> Path:
    """Save the image in grey with the true outline in green and the predicted one in red (PNG).

    Args:
        path: the PNG to write (its folder is created; written to a temporary name, then renamed).
        image: 2D or 3D image (no channel); a 3D one is shown at :func:`display_slice` of the
            truth (or of the prediction without truth).
        truth: the true mask, or ``None``.
        pred: the predicted mask.
        title: the figure's title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img, prd = _array(image), _array(pred)
    tru = None if truth is None else _array(truth)
    if img.ndim == 3:
        index = display_slice(tru if tru is not None and tru.any() else prd)
        img, prd = img[..., index], prd[..., index]
        tru = None if tru is None else tru[..., index]
        title = f"{title} (slice {index})"
    fig, ax = plt.subplots(figsize=(3.2, 3.4))
    ax.imshow(img.T, cmap="gray", origin="lower")
    for mask, colour in ((tru, "lime"), (prd, "red")):
        if mask is not None and mask.any() and not mask.all():
            ax.contour(mask.T > 0, levels=[0.5], colors=colour, linewidths=1.0)
    ax.set_title(title + "\ngreen: truth, red: prediction", fontsize=8)
    ax.axis("off")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=80, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    return out
