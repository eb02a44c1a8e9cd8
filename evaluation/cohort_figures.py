"""Figures that show a cohort at a glance: a montage of images with their lesion outlines."""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path

import numpy as np

from transforms.image_loading import load_image
from transforms.keys import Keys

__all__ = ["cohort_montage"]


def _middle_slice(array: np.ndarray) -> np.ndarray:
    """A 2D view ``(x, y)`` of a channel-first image: first channel, middle axial slice."""
    image = array[0]
    return image[..., image.shape[-1] // 2] if image.ndim == 3 else image


def cohort_montage(
    datalist: str | PathLike, out_png: str | PathLike, n: int = 16, section: str = "training"
) -> Path:
    """Save a grid of cohort images with lesion outlines and labels.

    Args:
        datalist: a medglass/MONAI datalist JSON (paths relative to its folder).
        out_png: the PNG to write.
        n: images to show (first ``n`` of the section).
        section: datalist section.

    Returns:
        The written path.

    Raises:
        ValueError: ``n`` < 1 or the section is empty.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    root = Path(datalist).parent
    records = json.loads(Path(datalist).read_text()).get(section, [])[:n]
    if not records:
        raise ValueError(f"datalist {datalist}: section '{section}' is empty")
    cols = int(np.ceil(np.sqrt(len(records))))
    rows = int(np.ceil(len(records) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, record in zip(axes.ravel(), records, strict=False):
        image = _middle_slice(np.asarray(load_image(root / record[Keys.IMAGE])))
        ax.imshow(image.T, cmap="gray", origin="upper")  # (x, y) array shown with y down
        if record.get(Keys.MASK):
            mask = _middle_slice(np.asarray(load_image(root / record[Keys.MASK])))
            if mask.any():
                ax.contour(mask.T, levels=[0.5], colors="r", linewidths=0.8)
        attrs = record.get(Keys.ATTRIBUTES, {})
        ax.set_title(
            f"{record.get(Keys.ID, '')} y={record.get(Keys.LABEL, '?')}\n"
            f"{attrs.get('sex', '')} {attrs.get('age_band', '')} site {attrs.get('site', '')} "
            f"{'+marker' if attrs.get('marker') == 'present' else ''}",
            fontsize=7,
        )
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
