"""A PNG of an image with its true (green) and predicted (red, with scores) boxes.

A 3D volume is drawn as its maximum-intensity projection along the last axis, each box as its
projection. Used once per epoch for a few validation images (logged to MLflow) and by
``medglass detect infer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import torch

__all__ = ["draw_boxes"]


def _numpy(value: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def draw_boxes(
    path: str | PathLike,
    image: torch.Tensor | np.ndarray,
    pred_boxes: torch.Tensor | np.ndarray,
    pred_scores: torch.Tensor | np.ndarray,
    true_boxes: torch.Tensor | np.ndarray | None = None,
    title: str = "",
    max_boxes: int = 10,
) -> Path:
    """Draw ``image`` (channel-first) with boxes and write a PNG (atomically).

    Args:
        path: the PNG to write (its folder is created).
        image: ``(1, x, y[, z])`` image.
        pred_boxes: ``(N, 4|6)`` predicted corner boxes (index units).
        pred_scores: ``(N,)`` their scores; the ``max_boxes`` best are drawn.
        true_boxes: ``(M, 4|6)`` true boxes, or None.
        title: figure title.
        max_boxes: most predicted boxes drawn.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    array = _numpy(image)[0]
    dims = array.ndim
    if dims == 3:
        array = array.max(axis=2)
    fig, ax = plt.subplots(figsize=(3.2, 3.4), dpi=100)
    # array axes are (x, y): show x across, y down
    ax.imshow(array.T, cmap="gray", origin="upper")

    def rect(box: np.ndarray, colour: str) -> None:
        x0, y0, x1, y1 = box[0], box[1], box[dims], box[dims + 1]
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, lw=1.2))

    if true_boxes is not None:
        for box in _numpy(true_boxes).reshape(-1, 2 * dims):
            rect(box, "lime")
    boxes = _numpy(pred_boxes).reshape(-1, 2 * dims)
    scores = _numpy(pred_scores).reshape(-1)
    for i in np.argsort(-scores)[:max_boxes]:
        rect(boxes[i], "red")
        ax.text(boxes[i][0], boxes[i][1] - 1, f"{scores[i]:.2f}", color="red", fontsize=6)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path
